#include <cstring>

#include "hydrox/json/json.hpp"

#include <unordered_set>

namespace hydrox::json {

std::string_view kind_name(Kind k) {
  switch (k) {
    case Kind::null: return "null";
    case Kind::boolean: return "boolean";
    case Kind::number: return "number";
    case Kind::string: return "string";
    case Kind::array: return "array";
    case Kind::object: return "object";
  }
  return "unknown";
}

Value Value::make_bool(bool b) {
  Value v;
  v.kind_ = Kind::boolean;
  v.bool_ = b;
  return v;
}
Value Value::make_number(std::string literal) {
  Value v;
  v.kind_ = Kind::number;
  v.text_ = std::move(literal);
  return v;
}
Value Value::make_string(std::string s) {
  Value v;
  v.kind_ = Kind::string;
  v.text_ = std::move(s);
  return v;
}
Value Value::make_array(std::vector<Value> items) {
  Value v;
  v.kind_ = Kind::array;
  v.items_ = std::move(items);
  return v;
}
Value Value::make_object(std::vector<Member> members) {
  Value v;
  v.kind_ = Kind::object;
  v.members_ = std::move(members);
  return v;
}

const Value* Value::find(std::string_view key) const {
  if (kind_ != Kind::object) return nullptr;
  for (const auto& m : members_) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}

Result<decimal::Decimal> Value::as_decimal() const {
  if (kind_ != Kind::number && kind_ != Kind::string) {
    return fail(Code::invalid_field, "must be a number or a decimal string");
  }
  return decimal::parse(text_);
}

Result<std::int64_t> Value::as_int(std::int64_t min, std::int64_t max) const {
  if (kind_ != Kind::number) return fail(Code::invalid_field, "must be an integer");
  auto d = decimal::parse(text_);
  if (!d) return d.error();
  auto v = decimal::to_units(*d, 0, decimal::Rounding::exact);
  if (!v) return fail(Code::invalid_field, "must be an integer");
  if (*v < min || *v > max) {
    return fail(Code::invalid_field,
                "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return *v;
}

namespace {

class Parser {
 public:
  Parser(std::string_view text, const Limits& limits) : s_(text), limits_(limits) {}

  Result<Value> document() {
    skip_ws();
    auto v = value(0);
    if (!v) return v;
    skip_ws();
    if (pos_ != s_.size()) return error("unexpected data after the JSON value");
    return v;
  }

 private:
  Error error(std::string msg) {
    return fail(Code::malformed_json, msg + " at offset " + std::to_string(pos_));
  }

  void skip_ws() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Result<Value> value(int depth) {
    if (pos_ >= s_.size()) return error("unexpected end of input");
    char c = s_[pos_];
    switch (c) {
      case '{': return object(depth + 1);
      case '[': return array(depth + 1);
      case '"': {
        auto str = string();
        if (!str) return str.error();
        return Value::make_string(std::move(*str));
      }
      case 't':
        if (literal("true")) return Value::make_bool(true);
        break;
      case 'f':
        if (literal("false")) return Value::make_bool(false);
        break;
      case 'n':
        if (literal("null")) return Value::make_null();
        break;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return number();
        break;
    }
    return error("unexpected character");  // also NaN, Infinity, 'undefined', ...
  }

  Result<Value> number() {
    const std::size_t start = pos_;
    auto digit = [&] { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
    if (s_[pos_] == '-') ++pos_;
    if (!digit()) return error("invalid number");
    if (s_[pos_] == '0') {
      ++pos_;
      if (digit()) return error("leading zero in number");
    } else {
      while (digit()) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digit()) return error("invalid number");
      while (digit()) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digit()) return error("invalid number");
      while (digit()) ++pos_;
    }
    std::string_view lit = s_.substr(start, pos_ - start);
    // Every number must be representable exactly; 1e400 is refused here, not rounded to inf.
    if (auto d = decimal::parse(lit); !d) {
      return fail(Code::number_out_of_range,
                  "number out of range at offset " + std::to_string(start));
    }
    return Value::make_number(std::string(lit));
  }

  static int hex4(std::string_view s) {
    int v = 0;
    for (char c : s) {
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else return -1;
    }
    return v;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // Length of the valid UTF-8 sequence at s_[pos_], or 0.
  std::size_t utf8_length() const {
    auto at = [&](std::size_t k) -> unsigned char {
      return pos_ + k < s_.size() ? static_cast<unsigned char>(s_[pos_ + k]) : 0;
    };
    auto cont = [&](std::size_t k) { return (at(k) & 0xC0) == 0x80; };
    unsigned char c = at(0);
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
      if (!cont(1) || !cont(2)) return 0;
      if (c == 0xE0 && at(1) < 0xA0) return 0;   // overlong
      if (c == 0xED && at(1) > 0x9F) return 0;   // surrogates
      return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
      if (!cont(1) || !cont(2) || !cont(3)) return 0;
      if (c == 0xF0 && at(1) < 0x90) return 0;
      if (c == 0xF4 && at(1) > 0x8F) return 0;
      return 4;
    }
    return 0;
  }

  Result<std::string> string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) return error("unterminated string");
      if (out.size() > limits_.max_string_bytes) return error("string too long");
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) return error("control character in string");
      if (c == '\\') {
        if (pos_ + 1 >= s_.size()) return error("unterminated string");
        char e = s_[pos_ + 1];
        pos_ += 2;
        switch (e) {
          case '"': out.push_back('"'); break;
          case '\\': out.push_back('\\'); break;
          case '/': out.push_back('/'); break;
          case 'b': out.push_back('\b'); break;
          case 'f': out.push_back('\f'); break;
          case 'n': out.push_back('\n'); break;
          case 'r': out.push_back('\r'); break;
          case 't': out.push_back('\t'); break;
          case 'u': {
            if (pos_ + 4 > s_.size()) return error("bad \\u escape");
            int cp = hex4(s_.substr(pos_, 4));
            if (cp < 0) return error("bad \\u escape");
            pos_ += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (pos_ + 6 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') {
                return error("lone surrogate");
              }
              int lo = hex4(s_.substr(pos_ + 2, 4));
              if (lo < 0xDC00 || lo > 0xDFFF) return error("lone surrogate");
              pos_ += 6;
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              return error("lone surrogate");
            } else if (cp == 0) {
              // No text the system keeps can hold a NUL (PostgreSQL text, C strings in libpq).
              return error("\\u0000 (NUL) in string");
            }
            append_utf8(out, static_cast<unsigned>(cp));
            break;
          }
          default:
            return error("bad escape");
        }
        continue;
      }
      if (c < 0x80) {
        // A run of plain ASCII in one append (most strings are nothing else).
        std::size_t end = pos_ + 1;
        while (end < s_.size()) {
          const unsigned char d = static_cast<unsigned char>(s_[end]);
          if (d == '"' || d == '\\' || d < 0x20 || d >= 0x80) break;
          ++end;
        }
        out.append(s_.data() + pos_, end - pos_);
        pos_ = end;
        continue;
      }
      std::size_t len = utf8_length();
      if (len == 0) return error("invalid UTF-8");
      out.append(s_.substr(pos_, len));
      pos_ += len;
    }
  }

  Result<Value> array(int depth) {
    if (depth > limits_.max_depth) return error("nesting too deep");
    ++pos_;
    std::vector<Value> items;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return Value::make_array(std::move(items));
    }
    while (true) {
      skip_ws();
      auto v = value(depth);
      if (!v) return v;
      if (items.size() >= limits_.max_elements) return error("too many array elements");
      items.push_back(std::move(*v));
      skip_ws();
      if (pos_ >= s_.size()) return error("unterminated array");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return Value::make_array(std::move(items));
      }
      return error("expected ',' or ']'");
    }
  }

  Result<Value> object(int depth) {
    if (depth > limits_.max_depth) return error("nesting too deep");
    ++pos_;
    std::vector<Member> members;
    members.reserve(8);
    // Duplicate keys: a scan while the object is small, a hash set beyond (linear overall: an
    // object of 10^5 keys must not cost 10^10 comparisons).
    constexpr std::size_t kScanUpTo = 16;
    std::unordered_set<std::string> seen;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return Value::make_object(std::move(members));
    }
    while (true) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') return error("expected a key");
      auto key = string();
      if (!key) return key.error();
      bool duplicate = false;
      if (members.size() < kScanUpTo) {
        for (const auto& m : members) duplicate |= m.key == *key;
      } else {
        if (seen.empty()) {
          for (const auto& m : members) seen.insert(m.key);
        }
        duplicate = !seen.insert(*key).second;
      }
      if (duplicate) {
        Error e = error("duplicate key \"" + *key + "\"");
        e.field = *key;
        return e;
      }
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') return error("expected ':'");
      ++pos_;
      skip_ws();
      auto v = value(depth);
      if (!v) {  // the innermost key names the field at fault
        Error e = v.error();
        if (e.field.empty()) e.field = *key;
        return e;
      }
      if (members.size() >= limits_.max_elements) return error("too many object members");
      members.push_back(Member{std::move(*key), std::move(*v)});
      skip_ws();
      if (pos_ >= s_.size()) return error("unterminated object");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return Value::make_object(std::move(members));
      }
      return error("expected ',' or '}'");
    }
  }

  std::string_view s_;
  const Limits& limits_;
  std::size_t pos_ = 0;
};

}  // namespace

Result<Value> parse(std::string_view text, const Limits& limits) {
  if (text.size() > limits.max_bytes) {
    return fail(Code::payload_too_large, "JSON document larger than the limit");
  }
  return Parser(text, limits).document();
}

Result<Value> parse_object(std::string_view text, std::initializer_list<std::string_view> allowed,
                           const Limits& limits) {
  auto doc = parse(text.empty() ? std::string_view("{}") : text, limits);
  if (!doc) return doc.error();
  if (!doc->is_object()) return fail(Code::malformed_json, "the body must be a JSON object");
  for (const auto& m : doc->members()) {
    bool known = false;
    for (auto a : allowed) known = known || m.key == a;
    // The api-contract lets a client send `user_id` (the seed's clients did): tolerated and never
    // read where not asked for. Identity comes only from the gateway's X-User-ID.
    if (!known && m.key != kIgnoredUserIdKey)
      return fail(Code::unknown_field, "unknown field " + m.key, m.key);
  }
  return doc;
}

}  // namespace hydrox::json
