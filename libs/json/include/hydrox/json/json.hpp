#pragma once
// JSON with exact numbers both ways. The parser keeps every number as its literal text (so
// 97250.50 reaches the engine as exactly that), refuses NaN/Infinity and numbers beyond the decimal
// range, and enforces size, depth and count limits. The writer emits fixed-point values as plain
// decimal literals.
#include "hydrox/core/error.hpp"
#include "hydrox/decimal/decimal.hpp"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace hydrox::json {

enum class Kind : std::uint8_t { null, boolean, number, string, array, object };
std::string_view kind_name(Kind k);

struct Member;

class Value {
 public:
  // Special members are defined after Member (a vector of an incomplete type must not be
  // destroyed or copied before the type is complete; clang enforces it).
  Value();
  ~Value();
  Value(const Value&);
  Value(Value&&) noexcept;
  Value& operator=(const Value&);
  Value& operator=(Value&&) noexcept;
  static Value make_null() { return Value(); }
  static Value make_bool(bool b);
  static Value make_number(std::string literal);  // caller guarantees a valid literal
  static Value make_string(std::string s);
  static Value make_array(std::vector<Value> items);
  static Value make_object(std::vector<Member> members);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_bool() const { return kind_ == Kind::boolean; }
  bool is_number() const { return kind_ == Kind::number; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_array() const { return kind_ == Kind::array; }
  bool is_object() const { return kind_ == Kind::object; }

  bool as_bool() const { return bool_; }
  std::string_view number_text() const { return text_; }  // the literal, exactly as received
  const std::string& as_string() const { return text_; }
  const std::vector<Value>& items() const { return items_; }
  const std::vector<Member>& members() const { return members_; }
  const Value* find(std::string_view key) const;  // nullptr when absent or not an object

  // A decimal from a JSON number or a decimal string, parsed exactly.
  Result<decimal::Decimal> as_decimal() const;
  // An integer from a JSON number with no fraction (e.g. limit=50), within [min, max].
  Result<std::int64_t> as_int(std::int64_t min, std::int64_t max) const;

 private:
  Kind kind_ = Kind::null;
  bool bool_ = false;
  std::string text_;  // number literal or string contents
  std::vector<Value> items_;
  std::vector<Member> members_;
};

struct Member {
  std::string key;
  Value value;
};

inline Value::Value() = default;
inline Value::~Value() = default;
inline Value::Value(const Value&) = default;
inline Value::Value(Value&&) noexcept = default;
inline Value& Value::operator=(const Value&) = default;
inline Value& Value::operator=(Value&&) noexcept = default;

struct Limits {
  std::size_t max_bytes = 1 << 20;     // same as the HTTP body limit
  int max_depth = 32;                  // nesting of arrays and objects
  std::size_t max_string_bytes = 64 * 1024;
  std::size_t max_elements = 10'000;   // items of one array or members of one object
};

// Whole-document parse; trailing non-whitespace, duplicate keys and invalid UTF-8 are errors.
// Errors use Code::malformed_json (Code::number_out_of_range for 1e400 and the like, and
// Code::payload_too_large beyond max_bytes).
Result<Value> parse(std::string_view text, const Limits& limits = {});

// A request body that must be a JSON object with only the given fields: MALFORMED_JSON for
// anything else, UNKNOWN_FIELD naming the first unexpected field. An empty body is {}.
// A top-level "user_id" not in `allowed` is accepted and ignored (api-contract "Identity").
inline constexpr std::string_view kIgnoredUserIdKey = "user_id";
Result<Value> parse_object(std::string_view text, std::initializer_list<std::string_view> allowed,
                           const Limits& limits = {});

// Streaming writer; the caller keeps begin/end balanced.
class Writer {
 public:
  Writer& begin_object();
  Writer& end_object();
  Writer& begin_array();
  Writer& end_array();
  Writer& key(std::string_view k);
  Writer& string(std::string_view s);
  Writer& boolean(bool b);
  Writer& null();
  Writer& integer(std::int64_t v);
  // units * 10^-scale as a plain number literal: decimal(972505, 1) writes 97250.5
  Writer& decimal(std::int64_t units, int scale);
  Writer& raw_number(std::string_view literal);
  // A JSON document produced elsewhere (e.g. a cached body), inserted as one value.
  Writer& raw_value(std::string_view json);

  // Shorthands for an object member.
  Writer& field(std::string_view k, std::string_view s) { return key(k).string(s); }
  Writer& field(std::string_view k, const char* s) { return key(k).string(s); }
  Writer& field(std::string_view k, bool b) { return key(k).boolean(b); }
  Writer& field(std::string_view k, std::int64_t v) { return key(k).integer(v); }
  Writer& field(std::string_view k, int v) { return key(k).integer(v); }
  Writer& field_decimal(std::string_view k, std::int64_t units, int scale) {
    return key(k).decimal(units, scale);
  }

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void before_value();
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

// s as a JSON string literal, quotes included.
std::string quote(std::string_view s);

// A parsed value back to compact JSON (numbers keep their exact literal text).
std::string dump(const Value& v);

}  // namespace hydrox::json
