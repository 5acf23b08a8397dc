#pragma once
// The gateway's handlers; each file holds one.
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <thread>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <string>
#include <vector>

#include "hydrox/config/env.hpp"
#include "hydrox/core/gcra.hpp"
#include "hydrox/http/client.hpp"
#include "hydrox/http/server.hpp"
#include "hydrox/service/service.hpp"

namespace hydrox::redis {
class Script;
}

namespace hydrox::gateway {

// Answers an upstream marked fresh for a while (X-Fresh-For-Ms: market's ticker and market list,
// whose age it knows): GETs of the same path and query are answered from memory until then, never
// longer, so nothing is older than the upstream's TTL. At most 4,096 entries.
class ResponseCache {
 public:
  std::optional<http::Response> get(const std::string& target);
  void put(const std::string& target, const http::Response& res);

 private:
  struct Entry {
    http::Response res;
    std::chrono::steady_clock::time_point until;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
};

struct Upstream {
  std::string name;  // market, trading, vault, user
  config::Endpoint endpoint;
  std::shared_ptr<ResponseCache> cache;  // set for market
};

// GET /health: 200 only when the gateway and all four services are ready, else 503 naming the
// failing ones. Each service's /ready is asked afresh, with a short timeout.
http::Handler make_health(service::Context& ctx, std::vector<Upstream> upstreams,
                          std::shared_ptr<http::Client> client);

// Who may call a route: anyone (identity ignored), anyone with identity passed when a valid
// credential comes, or only a caller with a valid credential (401 otherwise).
enum class Access : std::uint8_t { open, optional_user, user };

// Events per client address in fixed windows (a second, a minute): the gateway's local limits
// (health checks, WebSocket upgrades, invalid credentials). Bounded: past 100,000 addresses the
// table starts over (an attacker rotating addresses gets fresh windows, never more memory).
class AddressWindows {
 public:
  explicit AddressWindows(std::chrono::steady_clock::duration window) : window_(window) {}
  // Counts one event for `address`; false when that makes more than `limit` in this window.
  bool take(const std::string& address, std::int64_t limit) { return add(address) <= limit; }
  // Whether `address` already has `limit` events in this window (nothing counted).
  bool reached(const std::string& address, std::int64_t limit) {
    std::lock_guard lock(mu_);
    auto it = counts_.find(address);
    return it != counts_.end() && it->second.first == now() && it->second.second >= limit;
  }
  std::int64_t add(const std::string& address) {
    std::lock_guard lock(mu_);
    if (counts_.size() > 100'000) counts_.clear();
    auto& [at, n] = counts_[address];
    if (const std::int64_t w = now(); at != w) {
      at = w;
      n = 0;
    }
    return ++n;
  }

 private:
  std::int64_t now() const { return std::chrono::steady_clock::now().time_since_epoch() / window_; }
  std::chrono::steady_clock::duration window_;
  std::mutex mu_;
  std::unordered_map<std::string, std::pair<std::int64_t, std::int64_t>>
      counts_;  // → (window, count)
};

// Resolves `Authorization: Bearer <session token or API key>` to a user: a local cache of at
// most 1 s (so a revocation takes effect within 1 s), then Redis on the blocking pool; when Redis
// cannot answer (down, or restarted without the credentials), the user service, which reads
// PostgreSQL.
class Authenticator {
 public:
  Authenticator(service::Context& ctx, config::Endpoint user_service, std::shared_ptr<http::Client> client)
      : ctx_(ctx), user_service_(std::move(user_service)), client_(std::move(client)) {}
  struct Identity {
    std::string user_id;
    std::string kind;   // session | api_key
    std::string scope;  // read | trade
    std::string hash;   // SHA-256 of the credential (lets the user service revoke a session)
  };
  // done(nullopt) when there is no credential; an error when it is not valid.
  void resolve(const http::Request& req, std::function<void(Result<std::optional<Identity>>)> done);
  // The same, blocking (the WebSocket upgrade path: rare, bounded by Redis's timeout).
  Result<std::optional<Identity>> resolve_now(const http::Request& req);

 private:
  struct Entry {
    std::optional<Identity> identity;  // nullopt: known invalid
    std::chrono::steady_clock::time_point at;
  };
  // Blocking: Redis, then the user service. nullopt: no live credential has this hash.
  Result<std::optional<Identity>> lookup(const std::string& hash);
  // Invalid credentials per address and minute (RATE_LIMIT_AUTH_FAIL_PER_MIN): beyond the limit
  // the address gets 429 before any lookup.
  bool failing_too_often(const std::string& ip) {
    return max_failures_per_min_ > 0 && failures_.reached(ip, max_failures_per_min_);
  }
  void count_failure(const std::string& ip) { failures_.add(ip); }
  AddressWindows failures_{std::chrono::minutes(1)};
  int max_failures_per_min_ = 300;

 public:
  void set_max_failures_per_min(int n) { max_failures_per_min_ = n; }

 private:
  service::Context& ctx_;
  config::Endpoint user_service_;
  std::shared_ptr<http::Client> client_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> cache_;
};

// Rate limits per IP and per user, decided in this process (GCRA: one "theoretical arrival time"
// per key, no Redis trip per request). Several gateways share one budget by dividing it: each
// announces itself in Redis every second (a sorted set of live gateways) and allows 1/N of every
// burst and rate, N the gateways seen alive in the last 5 s; if Redis is unreachable the last N
// stands. A client spread over the gateways (any load balancer) gets the whole limit, one pinned
// to one gateway 1/N of it: never more than the limit in total.
class RateLimiter {
 public:
  struct Bucket {
    std::int64_t capacity = 0;  // burst; 0 disables
    std::int64_t per_minute = 60;
  };
  struct Limits {
    Bucket per_ip, per_user, auth_per_ip;
  };
  struct Decision {
    bool allowed = true;
    std::int64_t limit = 0, remaining = 0, reset_s = 0, retry_after_s = 0;
  };
  struct Ask {
    std::string key;  // "ip:1.2.3.4", "user:<id>", ...
    Bucket bucket;
  };
  // With a Redis client in `ctx`, the gateway announces itself and learns how many share the
  // budget; without one it keeps the whole budget.
  RateLimiter(service::Context& ctx, Limits limits);
  ~RateLimiter();
  const Limits& limits() const { return limits_; }
  // Whether an enabled bucket applies to a request (auth routes: the auth bucket; others: per IP,
  // and per user when there is one).
  bool applies(bool auth_route, bool has_user) const {
    return auth_route ? limits_.auth_per_ip.capacity > 0
                      : limits_.per_ip.capacity > 0 || (has_user && limits_.per_user.capacity > 0);
  }
  // Takes a token from `first` and, when it allowed, from `second`. In memory: call it anywhere.
  // A disabled bucket (capacity 0) allows; a bucket not reached keeps its default (allowed).
  std::pair<Decision, Decision> take(const Ask& first, const Ask& second);
  // RateLimit-Limit / -Remaining / -Reset, and Retry-After when refused.
  static void apply(const Decision& d, http::Response& res);
  int gateways() const { return gateways_.load(); }

 private:
  Decision take_one(const Ask& ask, double now_ms);
  Result<int> announce();  // this gateway into the live set; the live gateways counted
  void announce_loop();

  service::Context& ctx_;
  Limits limits_;
  Gcra gcra_;  // key → theoretical arrival time (hydrox/core/gcra.hpp)
  std::atomic<int> gateways_{1};
  std::string id_;  // this gateway in the live set
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread announcer_;
};

// Forwards the request to `to` over the pooled keep-alive client, with the caller's identity
// (X-User-ID, X-Auth-Kind, X-Auth-Scope) set by the gateway only; client-sent identity headers
// are removed. Upstream failures become 503 JSON within the client's timeouts.
http::Handler make_proxy(Upstream to, std::shared_ptr<http::Client> client, Access access,
                         std::shared_ptr<Authenticator> auth, std::shared_ptr<RateLimiter> limiter,
                         bool auth_route = false);

// Removes headers a client must never choose (identity) from a request about to be forwarded.
void strip_identity(http::Request& req);
// INTERNAL_TOKEN: added to every forwarded request and WebSocket upgrade (X-Internal-Token).
void set_internal_token(std::string token);
const std::string& internal_token();
// Legacy client mode (HYDROX_LEGACY_CLIENT_AUTH=1, off by default): keep a client's X-User-ID,
// from a local client only (loopback peer, loopback Host, not forwarded) unless `open_to_all`
// (HYDROX_LEGACY_CLIENT_AUTH_PUBLIC=1).
void set_legacy_client_auth(bool on, bool open_to_all = false);
bool legacy_client_auth();
// Whether an address is a loopback one (127.0.0.0/8, ::1, ::ffff:127.x, [::1], localhost).
bool loopback_address(std::string_view address);

// CORS for the configured origins: preflight answered here, headers added to every answer.
// `allow_user_header`: the preflight also allows X-User-ID (legacy client mode).
http::Middleware make_cors(std::vector<std::string> allowed_origins,
                           bool allow_user_header = false);

// GET /api/v1/openapi.json
http::Handler make_openapi();

}  // namespace hydrox::gateway
