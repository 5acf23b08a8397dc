#pragma once
// Errors as values: one code enum for the whole system, one table mapping each code to its HTTP
// status and public API code (api-contract.md "Errors").
#include <boost/system/result.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace hydrox {

enum class Code : std::uint8_t {
  bad_request,
  malformed_json,
  invalid_field,
  missing_field,
  unknown_field,
  number_out_of_range,
  too_many_decimals,
  unauthenticated,
  forbidden,
  not_found,
  route_not_found,
  method_not_allowed,
  conflict,
  payload_too_large,
  unsupported_media_type,
  unprocessable,
  rate_limited,
  headers_too_large,
  internal,
  unavailable,
  upstream_unavailable,
  upstream_timeout,
  overloaded,
};

struct CodeInfo {
  Code code;
  int http_status;
  std::string_view api_code;  // STABLE_UPPER_SNAKE, part of the public contract
};

// Every code with its mapping, in enum order.
std::span<const CodeInfo> all_codes();
const CodeInfo& info(Code code);
int http_status(Code code);
std::string_view api_code(Code code);

struct Error {
  Code code = Code::internal;
  std::string message;
  std::string field;  // empty unless one field is at fault

  Error() = default;
  Error(Code c, std::string msg, std::string fld = {})
      : code(c), message(std::move(msg)), field(std::move(fld)) {}
};

// Thrown only by Result::value() on an error; handlers catch it at their single catch point.
class ErrorException : public std::exception {
 public:
  explicit ErrorException(Error e) : error_(std::move(e)) {}
  const char* what() const noexcept override { return error_.message.c_str(); }
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

template <class T>
using Result = boost::system::result<T, Error>;

// Shorthand: return hydrox::fail(Code::invalid_field, "price must be positive", "price");
inline Error fail(Code code, std::string message, std::string field = {}) {
  return Error{code, std::move(message), std::move(field)};
}

}  // namespace hydrox
