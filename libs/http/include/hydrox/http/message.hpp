#pragma once
// HTTP request and response values shared by the server, the router, the client and every
// handler. Nothing here includes Beast or Asio, so business code compiles fast.
#include "hydrox/core/error.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hydrox::http {

enum class Method : std::uint8_t { get, head, post, put, patch, del, options, other };
std::string_view method_name(Method m);
Method parse_method(std::string_view text);

struct Header {
  std::string name;
  std::string value;
};

// Case-insensitive header list helpers.
std::optional<std::string_view> find_header(const std::vector<Header>& headers, std::string_view name);
void set_header(std::vector<Header>& headers, std::string_view name, std::string_view value);
void remove_header(std::vector<Header>& headers, std::string_view name);
bool iequals(std::string_view a, std::string_view b);

// Percent-decodes a query component ('+' is a space). nullopt on a bad escape.
std::optional<std::string> url_decode(std::string_view s);

struct Request {
  Method method = Method::get;
  std::string target;  // path + '?' + query, as received
  std::string path;
  std::string query;   // without '?'
  std::vector<Header> headers;
  std::string body;
  std::string remote_addr;
  std::string request_id;
  std::vector<std::pair<std::string, std::string>> path_params;

  std::optional<std::string_view> header(std::string_view name) const {
    return find_header(headers, name);
  }
  // First value of a query parameter, percent-decoded.
  std::optional<std::string> query_param(std::string_view name) const;
  // Every query parameter name, in order (for rejecting unknown ones).
  std::vector<std::string> query_names() const;
  std::string_view path_param(std::string_view name) const;
};

// Every query parameter's name and value percent-decoded as text (hydrox/core/text.hpp) of at
// most kMaxQueryValueBytes: otherwise the 400 naming the parameter (the server answers it).
inline constexpr std::size_t kMaxQueryValueBytes = 1024;
std::optional<Error> check_query(const Request& req);

struct Response {
  int status = 200;
  std::vector<Header> headers;
  std::string body;

  static Response json(int status, std::string body);
  // The api-contract error shape: {"error":{"code","message","field"?,"request_id"}}.
  static Response error(const Error& e, std::string_view request_id);
  void set_header(std::string_view name, std::string_view value) {
    http::set_header(headers, name, value);
  }
};

// Completes a request exactly once, from any thread.
using Respond = std::function<void(Response)>;
using Handler = std::function<void(Request&, Respond)>;

}  // namespace hydrox::http
