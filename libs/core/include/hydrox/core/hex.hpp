#pragma once
// Lower-case hexadecimal text of bytes, and back.
#include <optional>
#include <string>
#include <string_view>

namespace hydrox {

// The value of one hex digit (either case), -1 for any other character.
int hex_digit(char c);
std::string to_hex(std::string_view bytes);
// nullopt unless `text` is an even number of hex digits (either case).
std::optional<std::string> from_hex(std::string_view text);

}  // namespace hydrox
