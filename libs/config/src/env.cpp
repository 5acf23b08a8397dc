#include "hydrox/config/env.hpp"

#include <charconv>
#include <cstdlib>

namespace hydrox::config {
namespace {

Error bad(std::string_view name, std::string_view what, std::string_view got) {
  return fail(Code::invalid_field,
              std::string(name) + " must be " + std::string(what) + ", got \"" + std::string(got) + "\"",
              std::string(name));
}

}  // namespace

std::string Endpoint::to_string() const {
  return "http://" + host + ":" + std::to_string(port) + base_path;
}

Result<Endpoint> parse_http_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return fail(Code::invalid_field, "URL must start with http://");
  }
  std::string_view rest = url.substr(kScheme.size());
  std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  Endpoint ep;
  if (slash != std::string_view::npos) {
    ep.base_path = std::string(rest.substr(slash));
    while (!ep.base_path.empty() && ep.base_path.back() == '/') ep.base_path.pop_back();
  }
  std::size_t colon = authority.rfind(':');
  std::string_view host = authority;
  ep.port = 80;
  if (colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    std::string_view port = authority.substr(colon + 1);
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535) {
      return fail(Code::invalid_field, "URL has an invalid port");
    }
    ep.port = static_cast<std::uint16_t>(value);
  }
  if (host.empty()) return fail(Code::invalid_field, "URL has no host");
  ep.host = std::string(host);
  return ep;
}

Result<Endpoint> parse_http_urls(std::string_view urls) {
  std::optional<Endpoint> first;
  std::size_t start = 0;
  while (start <= urls.size()) {
    std::size_t comma = urls.find(',', start);
    if (comma == std::string_view::npos) comma = urls.size();
    std::string_view one = urls.substr(start, comma - start);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
    auto ep = parse_http_url(one);
    if (!ep) return ep.error();
    if (!first) first = std::move(*ep); else first->standbys.push_back(std::move(*ep));
    start = comma + 1;
  }
  if (first->standbys.size() > 7) return fail(Code::invalid_field, "at most 8 URLs");
  return std::move(*first);
}

Env::Env() = default;
Env::Env(std::map<std::string, std::string> vars) : vars_(std::move(vars)) {}

std::optional<std::string> Env::raw(std::string_view name) const {
  if (vars_) {
    auto it = vars_->find(std::string(name));
    if (it == vars_->end()) return std::nullopt;
    return it->second;
  }
  const char* v = std::getenv(std::string(name).c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

Result<std::string> Env::string(std::string_view name, std::string_view fallback) const {
  auto v = raw(name);
  if (!v || v->empty()) return std::string(fallback);
  return *v;
}

Result<std::string> Env::required(std::string_view name) const {
  auto v = raw(name);
  if (!v || v->empty()) {
    return fail(Code::invalid_field, std::string(name) + " must be set", std::string(name));
  }
  return *v;
}

Result<std::int64_t> Env::integer(std::string_view name, std::int64_t fallback, std::int64_t min,
                                  std::int64_t max) const {
  auto v = raw(name);
  if (!v || v->empty()) return fallback;
  std::int64_t value = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), value);
  if (ec != std::errc() || p != v->data() + v->size() || value < min || value > max) {
    return bad(name, "an integer in " + std::to_string(min) + ".." + std::to_string(max), *v);
  }
  return value;
}

Result<std::uint16_t> Env::port(std::string_view name, std::uint16_t fallback) const {
  // 0 asks the OS for a free port (tests use it).
  auto v = integer(name, fallback, 0, 65535);
  if (!v) return v.error();
  return static_cast<std::uint16_t>(*v);
}

Result<bool> Env::boolean(std::string_view name, bool fallback) const {
  auto v = raw(name);
  if (!v || v->empty()) return fallback;
  if (*v == "1" || *v == "true" || *v == "yes" || *v == "on") return true;
  if (*v == "0" || *v == "false" || *v == "no" || *v == "off") return false;
  return bad(name, "a boolean (1/0, true/false)", *v);
}

Result<Endpoint> Env::endpoint(std::string_view name, std::string_view fallback) const {
  auto v = string(name, fallback);
  if (!v) return v.error();
  auto ep = parse_http_urls(*v);
  if (!ep) return bad(name, "an http://host:port URL (or several, comma-separated)", *v);
  return ep;
}

}  // namespace hydrox::config
