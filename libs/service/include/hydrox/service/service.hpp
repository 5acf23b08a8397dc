#pragma once
// The fail-fast main shared by the five services: config → logging → database → Redis → the
// service's own setup (state recovery, routes) → listen → signals → run. Each step either succeeds
// or prints "init <step> failed: <reason>" and the process exits non-zero.
// Every service gets GET /health (alive), GET /ready (PostgreSQL and Redis reachable) and
// GET /metrics (Prometheus text).
#include "hydrox/config/env.hpp"
#include "hydrox/core/ids.hpp"
#include "hydrox/db/db.hpp"
#include "hydrox/http/router.hpp"
#include "hydrox/http/runtime.hpp"
#include "hydrox/http/server.hpp"
#include "hydrox/redis/redis.hpp"

#include <functional>
#include <initializer_list>
#include <optional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace hydrox::service {

struct Context {
  std::string name;
  config::Env env;
  http::Runtime* runtime = nullptr;
  http::Router* router = nullptr;
  http::Server* server = nullptr;  // set before on_started
  std::shared_ptr<db::Pool> db;    // null when the service does not use PostgreSQL
  std::shared_ptr<redis::Client> redis;
  redis::Address redis_address;
  std::uint16_t port = 0;  // the bound port, set before on_started
  // Applied to the server when it is created (after setup).
  std::vector<http::Middleware> middleware;
  std::vector<http::Tunnel> tunnels;
  std::vector<std::pair<std::string, http::WsHandlers>> websockets;
  http::WsOptions websocket_options;
  // Run after the event loop stopped, before the runtime is destroyed: release anything that
  // holds sockets or threads (static state must not outlive the runtime).
  std::vector<std::function<void()>> on_stop;
  // Run on SIGTERM/SIGINT, when the listener stops accepting (e.g. to stop listeners of its own).
  std::vector<std::function<void()>> on_signal;
  // INTERNAL_TOKEN: the secret the gateway adds to every request it forwards (X-Internal-Token).
  // Set, a service believes identity headers (X-User-ID, X-Auth-*) only on requests carrying it;
  // empty (loopback only), it believes them from anyone who reaches it.
  std::string internal_token;
};

inline constexpr std::string_view kInternalTokenHeader = "X-Internal-Token";
// Added by the gateway, in legacy client mode only (HYDROX_LEGACY_CLIENT_AUTH=1), to every request
// it forwards: the user service then connects a wallet by its address alone and makes no API keys.
// Believed only next to the internal token, like the identity headers.
inline constexpr std::string_view kLegacyModeHeader = "X-Legacy-Client-Auth";

// Whether `req` came through the gateway (carries the internal token, compared in constant time),
// or no internal token is configured.
bool from_gateway(const Context& ctx, const http::Request& req);
// The headers a service adds to its own calls to another service that should act for a user.
std::vector<http::Header> internal_headers(const Context& ctx);

struct Spec {
  std::string name;
  std::uint16_t default_port = 8080;
  std::string default_listen_address = "127.0.0.1";  // internal services; the gateway: 0.0.0.0
  bool uses_database = true;
  bool builtin_health = true;  // the gateway answers /health for the whole system itself
  // /ready and /metrics on the listener (the gateway's public listener serves neither)
  bool builtin_ops = true;
  // The identity headers on a request without the internal token are removed before any
  // handler sees them (every service but the gateway, which sets them itself).
  bool trusts_gateway = true;
  // Registers routes and middleware, starts background work. An error stops the start.
  std::function<Result<void>(Context&)> setup;
  // After the listener is bound (e.g. to log URLs).
  std::function<void(Context&)> on_started;
};

int run(const Spec& spec);

// The user the gateway authenticated (X-User-ID), else 401. Services trust the header because
// only the gateway reaches them (docs/ARCHITECTURE.md, "Identity and the trust boundary").
Result<UserId> caller(const http::Request& req);

// List parameters of the contract: `limit` (1..1000, default `default_limit`) and a numeric
// `before` cursor (at most 18 digits); any query parameter not listed here or in `extra` is a 400.
struct Page {
  std::int64_t limit = 50;
  std::optional<std::string> before;
};
Result<Page> page_params(const http::Request& req, std::int64_t default_limit, std::string_view before_means,
                         std::initializer_list<std::string_view> extra = {});

// Runs `work` on the blocking pool and answers with its result; a full pool answers 503.
void respond_blocking(Context& ctx, http::Request& req, http::Respond respond,
                      std::function<Result<http::Response>()> work);

}  // namespace hydrox::service
