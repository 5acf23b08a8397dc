#include <atomic>

#include <boost/asio/ip/address.hpp>

#include "handlers.hpp"
#include "hydrox/auth/tokens.hpp"
#include "hydrox/service/credentials.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/core/clock.hpp"

namespace hydrox::gateway {

namespace {

// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded; Host and Content-Length are rewritten.
bool hop_by_hop(std::string_view name) {
  for (std::string_view h : {"connection", "keep-alive", "proxy-authenticate",
                             "proxy-authorization", "te", "trailer", "transfer-encoding",
                             "upgrade", "host", "content-length"}) {
    if (http::iequals(name, h)) return true;
  }
  return false;
}

}  // namespace

namespace {
std::atomic<bool> g_legacy_client_auth{false};
std::atomic<bool> g_legacy_public{false};
std::string g_internal_token;  // set once at start (setup), before any request

// Legacy mode on a loopback listener believes a client's X-User-ID only from this machine, asked
// for this machine by name: the peer is loopback, nothing says it was forwarded, and Host names
// loopback (a page whose name was rebound to 127.0.0.1 sends its own name).
bool local_request(const http::Request& req) {
  if (!loopback_address(req.remote_addr)) return false;
  if (req.header("X-Forwarded-For") || req.header("Forwarded")) return false;
  std::string_view host = req.header("Host").value_or("");
  if (host.starts_with("[")) {
    host = host.substr(0, host.find(']') + 1);
  } else if (auto colon = host.find(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  return loopback_address(host);
}
}  // namespace

void set_legacy_client_auth(bool on, bool open_to_all) {
  g_legacy_client_auth.store(on);
  g_legacy_public.store(open_to_all);
}
bool legacy_client_auth() {
  return g_legacy_client_auth.load();
}

bool loopback_address(std::string_view a) {
  if (a == "localhost") return true;
  if (a.size() > 2 && a.front() == '[' && a.back() == ']') a = a.substr(1, a.size() - 2);
  boost::system::error_code ec;
  const auto ip = boost::asio::ip::make_address(std::string(a), ec);
  if (ec) return false;
  if (ip.is_v6() && ip.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, ip.to_v6()).is_loopback();
  return ip.is_loopback();
}

void strip_identity(http::Request& req) {
  // Identity is the gateway's to set (after authentication), never the client's: the identity
  // headers and the internal token are removed. Nothing else: no service reads identity from a
  // body or a query (only from these headers), so there is no body to parse here.
  http::remove_header(req.headers, "X-Auth-Kind");
  http::remove_header(req.headers, "X-Auth-Scope");
  http::remove_header(req.headers, "X-Auth-Credential");
  http::remove_header(req.headers, service::kInternalTokenHeader);
  http::remove_header(req.headers, service::kLegacyModeHeader);
  if (g_legacy_client_auth.load() && (g_legacy_public.load() || local_request(req))) return;
  http::remove_header(req.headers, "X-User-ID");
}

void set_internal_token(std::string token) {
  g_internal_token = std::move(token);
}
const std::string& internal_token() {
  return g_internal_token;
}

void Authenticator::resolve(const http::Request& req, std::function<void(Result<std::optional<Identity>>)> done) {
  auto h = req.header("Authorization");
  if (!h) return done(std::optional<Identity>());
  // An address that sent too many invalid credentials this minute is refused before any lookup
  // (a flood of random bearers would otherwise cost a Redis read, or a user service call, each).
  const std::string ip = req.remote_addr;
  if (failing_too_often(ip))
    return done(fail(Code::rate_limited, "too many invalid credentials; retry later"));
  constexpr std::string_view kBearer = "Bearer ";
  if (!h->starts_with(kBearer) || h->size() > 200) {
    count_failure(ip);
    return done(fail(Code::unauthenticated, "malformed Authorization header"));
  }
  const std::string hash = auth::hash_hex(h->substr(kBearer.size()));
  const auto now = std::chrono::steady_clock::now();
  std::optional<Identity> cached;
  bool hit = false;
  {
    std::lock_guard lock(mu_);
    auto it = cache_.find(hash);
    if (it != cache_.end() && now - it->second.at < std::chrono::seconds(1)) {
      cached = it->second.identity;
      hit = true;
    }
  }
  if (hit) {
    if (!cached) {
      count_failure(ip);
      return done(fail(Code::unauthenticated, "invalid or revoked credential"));
    }
    return done(std::optional<Identity>(*cached));
  }
  bool queued = ctx_.runtime->try_blocking([this, hash, done, ip] {
    auto id = lookup(hash);
    if (!id) return done(id.error());
    {
      std::lock_guard lock(mu_);
      if (cache_.size() > 100'000) cache_.clear();  // bounded
      cache_[hash] = Entry{*id, std::chrono::steady_clock::now()};
    }
    if (!*id) {
      count_failure(ip);
      return done(fail(Code::unauthenticated, "invalid or revoked credential"));
    }
    done(std::optional<Identity>(**id));
  });
  if (!queued) done(fail(Code::overloaded, "gateway busy"));
}

Result<std::optional<Authenticator::Identity>> Authenticator::lookup(const std::string& hash) {
  auto c = service::resolve_credential(ctx_, *client_, user_service_, hash);
  if (!c) return c.error();
  if (!*c) return std::optional<Identity>();
  return std::optional<Identity>(Identity{(*c)->user.value().to_string(), std::string(auth::kind_name((*c)->kind)),
                                          std::string(auth::scope_name((*c)->scope)), hash});
}

Result<std::optional<Authenticator::Identity>> Authenticator::resolve_now(const http::Request& req) {
  auto h = req.header("Authorization");
  if (!h) return std::optional<Identity>();
  const std::string ip = req.remote_addr;  // the same per-address count as resolve()
  if (failing_too_often(ip))
    return fail(Code::rate_limited, "too many invalid credentials; retry later");
  constexpr std::string_view kBearer = "Bearer ";
  if (!h->starts_with(kBearer) || h->size() > 200) {
    count_failure(ip);
    return fail(Code::unauthenticated, "malformed Authorization header");
  }
  auto id = lookup(auth::hash_hex(h->substr(kBearer.size())));
  if (!id) return id.error();
  if (!*id) {
    count_failure(ip);
    return fail(Code::unauthenticated, "invalid or revoked credential");
  }
  return id;
}

std::optional<http::Response> ResponseCache::get(const std::string& target) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(target);
  if (it == entries_.end()) return std::nullopt;
  if (std::chrono::steady_clock::now() >= it->second.until) {
    entries_.erase(it);
    return std::nullopt;
  }
  return it->second.res;
}

void ResponseCache::put(const std::string& target, const http::Response& res) {
  auto fresh = http::find_header(res.headers, "X-Fresh-For-Ms");
  if (res.status != 200 || !fresh || fresh->empty() || fresh->size() > 6 ||
      fresh->find_first_not_of("0123456789") != std::string_view::npos) {
    return;
  }
  // Transit made it older than it says: keep it a little less.
  const auto ms = std::stoll(std::string(*fresh)) - 5;
  if (ms <= 0) return;
  std::lock_guard lock(mu_);
  if (entries_.size() >= 4096) entries_.clear();
  entries_[target] = Entry{res, std::chrono::steady_clock::now() + std::chrono::milliseconds(ms)};
}

namespace {

void forward(const Upstream& to, const std::shared_ptr<http::Client>& client, http::Request& req, http::Respond respond) {
  const bool cacheable = to.cache && req.method == http::Method::get;
  if (cacheable) {
    if (auto hit = to.cache->get(req.target)) {
      http::set_header(hit->headers, "X-Cache", "gateway");
      return respond(std::move(*hit));
    }
  }
  http::OutgoingRequest out;
  out.method = req.method;
  out.target = req.target;
  for (auto& h : req.headers) {
    if (!hop_by_hop(h.name) && !http::iequals(h.name, "Authorization")) out.headers.push_back(std::move(h));
  }
  http::set_header(out.headers, "X-Request-ID", req.request_id);
  http::set_header(out.headers, "X-Forwarded-For", req.remote_addr);
  // The services believe identity headers only next to this (service::from_gateway).
  if (!g_internal_token.empty())
    http::set_header(out.headers, service::kInternalTokenHeader, g_internal_token);
  if (g_legacy_client_auth.load()) http::set_header(out.headers, service::kLegacyModeHeader, "1");
  out.body = std::move(req.body);
  std::shared_ptr<ResponseCache> cache = cacheable ? to.cache : nullptr;
  client->request(to.endpoint, std::move(out),
                  [respond, rid = req.request_id, name = to.name, cache, target = cacheable ? req.target : std::string()](
                      Result<http::Response> r) {
                    if (!r) {
                      Error e = r.error();
                      e.message = name + " service unavailable";
                      respond(http::Response::error(e, rid));
                      return;
                    }
                    http::Response res;
                    res.status = r->status;
                    for (auto& h : r->headers) {
                      if (!hop_by_hop(h.name)) res.headers.push_back(std::move(h));
                    }
                    res.body = std::move(r->body);
                    if (cache) cache->put(target, res);
                    respond(std::move(res));
                  });
}

}  // namespace

http::Handler make_proxy(Upstream to, std::shared_ptr<http::Client> client, Access access,
                         std::shared_ptr<Authenticator> auth, std::shared_ptr<RateLimiter> limiter,
                         bool auth_route) {
  return [to = std::move(to), client, access, auth, limiter, auth_route](http::Request& req,
                                                                         http::Respond respond) {
    strip_identity(req);  // (keeps a client's X-User-ID only where legacy mode believes it)
    const bool legacy_identity = g_legacy_client_auth.load() && req.header("X-User-ID").has_value();
    auto shared = std::make_shared<http::Request>(std::move(req));
    req.request_id = shared->request_id;  // the server echoes it in the answer
    req.method = shared->method;
    // Rate limits, then forwarding; the limits' headers go on whatever answer follows.
    auto limited_forward = [to, client, limiter, auth_route, respond](std::shared_ptr<http::Request> r,
                                                                     std::string user_id) {
      if (!limiter->applies(auth_route, !user_id.empty())) return forward(to, client, *r, respond);
      // The buckets (per IP, then per user), decided in memory on this IO thread.
      const auto& l = limiter->limits();
      const auto [ip, user] = limiter->take(
          {(auth_route ? "auth:" : "ip:") + r->remote_addr, auth_route ? l.auth_per_ip : l.per_ip},
          {"user:" + user_id, user_id.empty() ? RateLimiter::Bucket{0, 60} : l.per_user});
      RateLimiter::Decision shown = ip;
      if (ip.allowed && !user_id.empty() && (!user.allowed || user.limit > 0)) shown = user;
      if (!shown.allowed || !ip.allowed) {
        auto res = http::Response::error(fail(Code::rate_limited, "too many requests; retry later"), r->request_id);
        RateLimiter::apply(shown.allowed ? ip : shown, res);
        return respond(std::move(res));
      }
      forward(to, client, *r, [respond, shown](http::Response res) {
        RateLimiter::apply(shown, res);
        respond(std::move(res));
      });
    };
    if (access == Access::open) return limited_forward(shared, "");
    auth->resolve(*shared, [access, shared, respond, legacy_identity, limited_forward](Result<std::optional<Authenticator::Identity>> id) {
      http::Request& r = *shared;
      if (!id) return respond(http::Response::error(id.error(), r.request_id));
      if (!*id) {
        if (access == Access::user && !legacy_identity) {
          return respond(http::Response::error(fail(Code::unauthenticated, "sign in, or send an API key as Authorization: Bearer"), r.request_id));
        }
        // A client-chosen X-User-ID (legacy mode) says so: the user service makes no API key
        // for it (a key would outlive the mode).
        if (legacy_identity) http::set_header(r.headers, "X-Auth-Kind", "legacy");
        return limited_forward(shared, legacy_identity ? std::string(r.header("X-User-ID").value_or("")) : "");
      }
      const auto& who = **id;
      if (who.scope == "read" && r.method != http::Method::get && r.method != http::Method::head) {
        return respond(http::Response::error(fail(Code::forbidden, "this API key may only read"), r.request_id));
      }
      http::set_header(r.headers, "X-User-ID", who.user_id);
      http::set_header(r.headers, "X-Auth-Kind", who.kind);
      http::set_header(r.headers, "X-Auth-Scope", who.scope);
      http::set_header(r.headers, "X-Auth-Credential", who.hash);
      limited_forward(shared, who.user_id);
    });
  };
}

}  // namespace hydrox::gateway
