#include "hydrox/json/json.hpp"

#include "hydrox/core/text.hpp"

namespace hydrox::json {
namespace {

void append_quoted(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  // Whatever a string holds (a client's bytes echoed in an error message), the output is JSON:
  // bytes that are not well-formed UTF-8 are written as U+FFFD.
  std::string repaired;
  for (char ch : s) {
    if (static_cast<unsigned char>(ch) >= 0x80) {
      if (!valid_utf8(s)) {
        repaired = utf8_repaired(s);
        s = repaired;
      }
      break;
    }
  }
  out.push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

}  // namespace

namespace {
void dump_into(std::string& out, const Value& v) {
  switch (v.kind()) {
    case Kind::null: out += "null"; break;
    case Kind::boolean: out += v.as_bool() ? "true" : "false"; break;
    case Kind::number: out += v.number_text(); break;
    case Kind::string: append_quoted(out, v.as_string()); break;
    case Kind::array:
      out += '[';
      for (std::size_t i = 0; i < v.items().size(); ++i) {
        if (i) out += ',';
        dump_into(out, v.items()[i]);
      }
      out += ']';
      break;
    case Kind::object:
      out += '{';
      for (std::size_t i = 0; i < v.members().size(); ++i) {
        if (i) out += ',';
        append_quoted(out, v.members()[i].key);
        out += ':';
        dump_into(out, v.members()[i].value);
      }
      out += '}';
      break;
  }
}
}  // namespace

std::string dump(const Value& v) {
  std::string out;
  dump_into(out, v);
  return out;
}

std::string quote(std::string_view s) {
  std::string out;
  append_quoted(out, s);
  return out;
}

void Writer::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_.push_back(',');
    first_.back() = false;
  }
}

Writer& Writer::begin_object() {
  before_value();
  out_.push_back('{');
  first_.push_back(true);
  return *this;
}
Writer& Writer::end_object() {
  out_.push_back('}');
  first_.pop_back();
  return *this;
}
Writer& Writer::begin_array() {
  before_value();
  out_.push_back('[');
  first_.push_back(true);
  return *this;
}
Writer& Writer::end_array() {
  out_.push_back(']');
  first_.pop_back();
  return *this;
}
Writer& Writer::key(std::string_view k) {
  before_value();
  append_quoted(out_, k);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}
Writer& Writer::string(std::string_view s) {
  before_value();
  append_quoted(out_, s);
  return *this;
}
Writer& Writer::boolean(bool b) {
  before_value();
  out_ += b ? "true" : "false";
  return *this;
}
Writer& Writer::null() {
  before_value();
  out_ += "null";
  return *this;
}
Writer& Writer::integer(std::int64_t v) {
  before_value();
  out_ += std::to_string(v);
  return *this;
}
Writer& Writer::decimal(std::int64_t units, int scale) {
  before_value();
  out_ += decimal::format(units, scale);
  return *this;
}
Writer& Writer::raw_number(std::string_view literal) {
  before_value();
  out_ += literal;
  return *this;
}
Writer& Writer::raw_value(std::string_view json) {
  before_value();
  out_ += json;
  return *this;
}

}  // namespace hydrox::json
