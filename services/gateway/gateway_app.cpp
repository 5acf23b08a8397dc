#include "gateway_app.hpp"

#include <chrono>
#include <mutex>
#include <unordered_map>

#include "handlers/handlers.hpp"
#include "hydrox/log/log.hpp"
#include "hydrox/metrics/metrics.hpp"

namespace hydrox::gateway {

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    std::string item = s.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

}  // namespace

Result<void> setup(service::Context& ctx) {
  std::vector<Upstream> upstreams;
  for (auto [name, var, fallback] :
       {std::tuple{"market", "MARKET_SERVICE_URL", "http://localhost:8081"},
        std::tuple{"trading", "TRADING_SERVICE_URL", "http://localhost:8082"},
        std::tuple{"vault", "VAULT_SERVICE_URL", "http://localhost:8083"},
        std::tuple{"user", "USER_SERVICE_URL", "http://localhost:8084"}}) {
    auto ep = ctx.env.endpoint(var, fallback);
    if (!ep) return ep.error();
    upstreams.push_back(Upstream{name, *ep});
  }
  auto origins = ctx.env.string("CORS_ALLOWED_ORIGINS", "http://localhost:3000,http://localhost:5173");
  if (!origins) return origins.error();
  auto upstream_timeout = ctx.env.integer("UPSTREAM_TIMEOUT_MS", 10'000, 100, 600'000);
  if (!upstream_timeout) return upstream_timeout.error();
  auto health_timeout = ctx.env.integer("HEALTH_TIMEOUT_MS", 1000, 50, 10'000);
  if (!health_timeout) return health_timeout.error();
  auto legacy = ctx.env.boolean("HYDROX_LEGACY_CLIENT_AUTH", false);
  if (!legacy) return legacy.error();
  bool legacy_public = false;
  if (*legacy) {
    // The original web client sends X-User-ID itself. Anyone can then act as anyone: never in
    // production, said loudly at every start, and only on a loopback listener unless
    // HYDROX_LEGACY_CLIENT_AUTH_PUBLIC=1 says otherwise.
    auto listen = ctx.env.string("LISTEN_ADDRESS", "0.0.0.0");
    if (!listen) return listen.error();
    auto open_to_all = ctx.env.boolean("HYDROX_LEGACY_CLIENT_AUTH_PUBLIC", false);
    if (!open_to_all) return open_to_all.error();
    if (!loopback_address(*listen) && !*open_to_all) {
      return fail(Code::invalid_field,
                  "HYDROX_LEGACY_CLIENT_AUTH=1 trusts a client's X-User-ID: listen on loopback "
                  "(LISTEN_ADDRESS=127.0.0.1) or also set HYDROX_LEGACY_CLIENT_AUTH_PUBLIC=1",
                  "LISTEN_ADDRESS");
    }
    legacy_public = *open_to_all;
    log::warn(
        "HYDROX_LEGACY_CLIENT_AUTH=1: client-sent X-User-ID is trusted; any caller can act as any "
        "user",
        {{"listen_address", *listen}});
  }
  set_legacy_client_auth(*legacy, legacy_public);
  set_internal_token(ctx.internal_token);
  // /metrics and /ready of the gateway on a loopback listener of their own (OPS_PORT, 0: none):
  // the public listener serves neither.
  auto ops_port = ctx.env.integer("OPS_PORT", 0, 0, 65535);
  if (!ops_port) return ops_port.error();
  if (*ops_port > 0) {
    http::Router ops;
    ops.get("/metrics", [](http::Request&, http::Respond respond) {
      http::Response r;
      r.body = metrics::Registry::global().render();
      r.set_header("Content-Type", "text/plain; version=0.0.4");
      respond(std::move(r));
    });
    ops.get("/ready", [](http::Request&, http::Respond respond) {
      respond(http::Response::json(200, R"({"service":"gateway","checks":{},"status":"ready"})"));
    });
    http::ServerOptions so;
    so.service = "gateway-ops";
    so.address = "127.0.0.1";
    so.port = static_cast<std::uint16_t>(*ops_port);
    static std::unique_ptr<http::Server> ops_server;
    ops_server = std::make_unique<http::Server>(*ctx.runtime, so, std::move(ops));
    if (auto bound = ops_server->start(); !bound)
      return fail(Code::internal, "OPS_PORT: " + bound.error().message);
    ctx.on_signal.push_back([] { ops_server->stop(std::chrono::milliseconds(0)); });
    ctx.on_stop.push_back([] { ops_server.reset(); });
  }
  if (ctx.internal_token.empty()) {
    log::warn(
        "INTERNAL_TOKEN is unset: the services believe X-User-ID from anyone who reaches their "
        "ports (loopback only)");
  }

  http::ClientOptions proxy_options;
  proxy_options.request_timeout = std::chrono::milliseconds(*upstream_timeout);
  auto proxy_client = std::make_shared<http::Client>(*ctx.runtime, proxy_options);
  http::ClientOptions health_options;
  health_options.connect_timeout = std::chrono::milliseconds(*health_timeout);
  health_options.request_timeout = std::chrono::milliseconds(*health_timeout);
  auto health_client = std::make_shared<http::Client>(*ctx.runtime, health_options);

  auto& r = *ctx.router;
  auto& market = upstreams[0];
  market.cache = std::make_shared<ResponseCache>();
  auto& trading = upstreams[1];
  auto& vault = upstreams[2];
  auto& user = upstreams[3];

  // The /health route replaces the built-in one: the gateway answers for the whole system.
  r.get("/health", make_health(ctx, upstreams, health_client));
  r.get("/api/v1/openapi.json", make_openapi());

  // Route table of the original README (markets and /ws → market; positions, orders, balances →
  // trading; vaults → vault; auth, users → user).
  http::ClientOptions lookup_options;
  lookup_options.request_timeout = std::chrono::milliseconds(2000);
  auto auth = std::make_shared<Authenticator>(ctx, user.endpoint, std::make_shared<http::Client>(*ctx.runtime, lookup_options));
  auto auth_failures = ctx.env.integer("RATE_LIMIT_AUTH_FAIL_PER_MIN", 300, 0, 1'000'000);
  if (!auth_failures) return auth_failures.error();
  auth->set_max_failures_per_min(static_cast<int>(*auth_failures));
  RateLimiter::Limits limits;
  for (auto [bucket, name, cap, per_min] :
       {std::tuple{&limits.per_ip, "IP", 1200, 6000}, std::tuple{&limits.per_user, "USER", 600, 3000},
        std::tuple{&limits.auth_per_ip, "AUTH_IP", 20, 20}}) {
    auto c = ctx.env.integer(std::string("RATE_LIMIT_") + name + "_BURST", cap, 0, 10'000'000);
    auto rate = ctx.env.integer(std::string("RATE_LIMIT_") + name + "_PER_MIN", per_min, 1, 100'000'000);
    if (!c) return c.error();
    if (!rate) return rate.error();
    *bucket = RateLimiter::Bucket{*c, *rate};
  }
  auto limiter = std::make_shared<RateLimiter>(ctx, limits);
  const std::tuple<const char*, const Upstream*, Access> table[] = {
      {"/api/v1/markets", &market, Access::open},           {"/api/v1/markets/*", &market, Access::open},
      {"/api/v1/oracle/prices", &market, Access::open},
      {"/api/v1/insurance", &trading, Access::open},       {"/api/v1/insurance/*", &trading, Access::open},
      {"/api/v1/positions", &trading, Access::user},        {"/api/v1/positions/*", &trading, Access::user},
      {"/api/v1/orders", &trading, Access::user},           {"/api/v1/orders/*", &trading, Access::user},
      {"/api/v1/balances", &trading, Access::user},         {"/api/v1/fills", &trading, Access::user},
      {"/api/v1/ledger", &trading, Access::user},           {"/api/v1/funding/*", &trading, Access::user},
      {"/api/v1/withdrawals", &trading, Access::user},      {"/api/v1/withdrawals/*", &trading, Access::user},
      {"/api/v1/vaults", &vault, Access::optional_user},    {"/api/v1/vaults/*", &vault, Access::optional_user},
      {"/api/v1/auth/*", &user, Access::optional_user},     {"/api/v1/users/*", &user, Access::user},
  };
  for (const auto& [pattern, upstream, access] : table) {
    const bool auth_route = std::string_view(pattern).starts_with("/api/v1/auth");
    r.any(pattern, make_proxy(*upstream, proxy_client, access, auth, limiter, auth_route));
  }

  ctx.middleware.push_back(make_cors(split_list(*origins), *legacy));
  // /ws: after the upgrade the client speaks to market's hub: its socket is handed to market when
  // market runs on this host (MARKET_WS_HANDOFF_SOCKET = market's HANDOFF_SOCKET), otherwise bytes
  // flow both ways through this process.
  auto handoff = ctx.env.string("MARKET_WS_HANDOFF_SOCKET", "");
  if (!handoff) return handoff.error();
  // WebSocket upgrades per client address and minute (WS_UPGRADES_PER_IP_PER_MIN): a reconnect
  // storm or a connection flood from one address stops here; market caps how many stay open.
  auto upgrades = ctx.env.integer("WS_UPGRADES_PER_IP_PER_MIN", 600, 1, 100'000'000);
  if (!upgrades) return upgrades.error();
  auto counts = std::make_shared<AddressWindows>(std::chrono::minutes(1));
  ctx.tunnels.push_back(http::Tunnel{
      "/ws",
      [market_ep = market.endpoint, auth, counts,
       max_upgrades = *upgrades](http::Request& req) -> Result<config::Endpoint> {
        if (!counts->take(req.remote_addr, max_upgrades)) {
          return fail(Code::rate_limited,
                      "too many WebSocket connections from this address; retry later");
        }
        strip_identity(req);
        http::set_header(req.headers, "X-Forwarded-For", req.remote_addr);
        // Authentication at the upgrade: a valid bearer makes private streams available.
        auto id = auth->resolve_now(req);
        if (!id) return id.error();
        if (*id) {
          http::set_header(req.headers, "X-User-ID", (*id)->user_id);
          http::set_header(req.headers, "X-Auth-Scope", (*id)->scope);  // order entry needs `trade`
          // The hub re-checks the credential while the connection lives (revocation, expiry).
          http::set_header(req.headers, "X-Auth-Credential", (*id)->hash);
        }
        if (!internal_token().empty())
          http::set_header(req.headers, service::kInternalTokenHeader, internal_token());
        http::remove_header(req.headers, "Authorization");
        return market_ep;
      },
      *handoff});
  return {};
}

}  // namespace hydrox::gateway
