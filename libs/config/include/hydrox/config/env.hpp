#pragma once
// Environment variables with validation: every error names the variable and the bad value, so a
// service that fails to start says exactly what to fix.
#include "hydrox/core/error.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hydrox::config {

struct Endpoint {  // http://host:port[/base]
  std::string host;
  std::uint16_t port = 0;
  std::string base_path;  // "" or "/something"
  // Other addresses of the same service, of which one serves at a time (trading's active and
  // standby): "http://a:8082,http://b:8092". http::Client moves on to the next one when a
  // connection is refused.
  std::vector<Endpoint> standbys;
  std::string to_string() const;
};

// Parses http://host[:port][/path]; only the http scheme (services talk on internal addresses).
Result<Endpoint> parse_http_url(std::string_view url);
// A comma-separated list of such URLs: the first, with the others as its standbys.
Result<Endpoint> parse_http_urls(std::string_view urls);

class Env {
 public:
  Env();  // the process environment
  explicit Env(std::map<std::string, std::string> vars);  // for tests

  std::optional<std::string> raw(std::string_view name) const;
  Result<std::string> string(std::string_view name, std::string_view fallback) const;
  Result<std::string> required(std::string_view name) const;
  Result<std::int64_t> integer(std::string_view name, std::int64_t fallback, std::int64_t min,
                               std::int64_t max) const;
  Result<std::uint16_t> port(std::string_view name, std::uint16_t fallback) const;
  Result<bool> boolean(std::string_view name, bool fallback) const;
  Result<Endpoint> endpoint(std::string_view name, std::string_view fallback) const;

 private:
  std::optional<std::map<std::string, std::string>> vars_;
};

}  // namespace hydrox::config
