#pragma once
// The one rule for every user string the system keeps or looks up (client order ids, idempotency
// keys, vault names and descriptions, API-key labels, addresses, query values): valid UTF-8, no
// control characters (C0, DEL, C1), at most a documented number of bytes. Checked at the edge, so
// a string that PostgreSQL (or a C string in libpq) could not hold never reaches a batch.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "hydrox/core/error.hpp"

namespace hydrox {

// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF);
// control characters are allowed here.
bool valid_utf8(std::string_view s);

// `s` with every byte that is not part of well-formed UTF-8 (and, with replace_nul, every NUL)
// replaced by U+FFFD: for text that must stay valid whatever came in (JSON out, PostgreSQL text).
std::string utf8_repaired(std::string_view s, bool replace_nul = false);

// What is wrong with `s` as text ("invalid UTF-8", "control character"), or nullopt when fine.
std::optional<std::string_view> text_problem(std::string_view s);

// 400 INVALID_FIELD naming `field` unless `s` is text of at most max_bytes bytes (and, when
// allow_empty is false, not empty).
Result<void> check_text(std::string_view s, std::string_view field, std::size_t max_bytes,
                        bool allow_empty = false);

}  // namespace hydrox
