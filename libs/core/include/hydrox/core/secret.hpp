#pragma once
// Comparing secrets (operator and internal tokens) in time that depends on the expected secret's
// length only, so that a caller cannot learn a token byte by byte from how long a refusal takes.
#include <string_view>

namespace hydrox {

bool constant_time_equal(std::string_view given, std::string_view secret);

}  // namespace hydrox
