#include "hydrox/core/text.hpp"

namespace hydrox {

namespace {
// Length of the well-formed UTF-8 sequence starting at p[i] (a byte >= 0x80), or 0.
std::size_t sequence_length(const unsigned char* p, std::size_t n, std::size_t i) {
  const unsigned char c = p[i];
  auto cont = [&](std::size_t k) { return i + k < n && (p[i + k] & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    return cont(1) && cont(2) && !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] > 0x9F)
               ? 3
               : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    return cont(1) && cont(2) && cont(3) && !(c == 0xF0 && p[i + 1] < 0x90) &&
                   !(c == 0xF4 && p[i + 1] > 0x8F)
               ? 4
               : 0;
  }
  return 0;
}
}  // namespace

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const std::size_t len = sequence_length(p, s.size(), i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string utf8_repaired(std::string_view s, bool replace_nul) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::string out;
  out.reserve(s.size() + 8);
  for (std::size_t i = 0; i < s.size();) {
    if (p[i] < 0x80) {
      if (p[i] == 0 && replace_nul)
        out += kReplacement;
      else
        out.push_back(s[i]);
      ++i;
      continue;
    }
    const std::size_t len = sequence_length(p, s.size(), i);
    if (len == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

std::optional<std::string_view> text_problem(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7F) return "control character";
      ++i;
      continue;
    }
    auto cont = [&](std::size_t k) { return i + k < n && (p[i + k] & 0xC0) == 0x80; };
    std::size_t len = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = cont(1) ? 2 : 0;
      if (len && c == 0xC2 && p[i + 1] <= 0x9F) return "control character";  // C1: U+0080..U+009F
    } else if (c >= 0xE0 && c <= 0xEF) {
      if (cont(1) && cont(2) && !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] > 0x9F))
        len = 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
      if (cont(1) && cont(2) && cont(3) && !(c == 0xF0 && p[i + 1] < 0x90) &&
          !(c == 0xF4 && p[i + 1] > 0x8F))
        len = 4;
    }
    if (len == 0) return "invalid UTF-8";
    i += len;
  }
  return std::nullopt;
}

Result<void> check_text(std::string_view s, std::string_view field, std::size_t max_bytes,
                        bool allow_empty) {
  const std::string f(field);
  if (s.empty() && !allow_empty) return fail(Code::invalid_field, f + " must not be empty", f);
  if (s.size() > max_bytes) {
    return fail(Code::invalid_field, f + " must be at most " + std::to_string(max_bytes) + " bytes",
                f);
  }
  if (auto problem = text_problem(s)) {
    return fail(Code::invalid_field, f + " must be text: " + std::string(*problem), f);
  }
  return {};
}

}  // namespace hydrox
