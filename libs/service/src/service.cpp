#include "hydrox/service/service.hpp"

#include <cstdio>
#include <thread>

#include "hydrox/core/secret.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"
#include "hydrox/metrics/metrics.hpp"

namespace hydrox::service {

namespace {

constexpr std::string_view kDefaultDatabaseUrl =
    "postgres://hydrox:hydrox@localhost:5432/hydrox?sslmode=disable";

int init_failed(std::string_view step, const std::string& reason) {
  std::fprintf(stderr, "init %.*s failed: %s\n", static_cast<int>(step.size()), step.data(),
               reason.c_str());
  log::error("init failed", {{"step", step}, {"reason", reason}});
  return 1;
}

void drop_user_id_query(http::Request& req) {
  if (req.query.find("user") == std::string::npos && req.query.find("%") == std::string::npos)
    return;
  std::string kept;
  std::string_view q = req.query;
  bool dropped = false;
  while (!q.empty()) {
    const std::size_t amp = q.find('&');
    const std::string_view pair = q.substr(0, amp);
    const auto name = http::url_decode(pair.substr(0, pair.find('=')));
    if (name && *name == "user_id") {
      dropped = true;
    } else if (!pair.empty()) {
      if (!kept.empty()) kept += '&';
      kept += pair;
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  if (!dropped) return;
  req.query = kept;
  req.target = req.path + (kept.empty() ? "" : "?" + kept);
}

bool loopback(std::string_view address) {
  return address.starts_with("127.") || address == "::1" || address == "localhost";
}

void add_builtin_routes(Context& ctx, bool health, bool ops) {
  if (health) {
    ctx.router->get("/health", [name = ctx.name](http::Request&, http::Respond respond) {
      json::Writer w;
      w.begin_object().field("status", "ok").field("service", name).end_object();
      respond(http::Response::json(200, w.take()));
    });
  }
  if (!ops) return;
  ctx.router->get("/ready", [&ctx](http::Request& req, http::Respond respond) {
    respond_blocking(ctx, req, respond, [&ctx]() -> Result<http::Response> {
      bool ok = true;
      json::Writer w;
      w.begin_object().field("service", ctx.name).key("checks").begin_object();
      if (ctx.db) {
        auto r = ctx.db->ping();
        ok = ok && r.has_value();
        w.field("postgres", r ? "ok" : r.error().message);
      }
      if (ctx.redis) {
        auto r = ctx.redis->ping();
        ok = ok && r.has_value();
        w.field("redis", r ? "ok" : r.error().message);
      }
      w.end_object().field("status", ok ? "ready" : "not_ready").end_object();
      return http::Response::json(ok ? 200 : 503, w.take());
    });
  });
  ctx.router->get("/metrics", [](http::Request&, http::Respond respond) {
    http::Response r;
    r.body = metrics::Registry::global().render();
    r.set_header("Content-Type", "text/plain; version=0.0.4");
    respond(std::move(r));
  });
}

}  // namespace

void respond_blocking(Context& ctx, http::Request& req, http::Respond respond,
                      std::function<Result<http::Response>()> work) {
  std::string rid = req.request_id;
  bool queued = ctx.runtime->try_blocking([respond, work = std::move(work), rid] {
    try {
      auto r = work();
      respond(r ? std::move(*r) : http::Response::error(r.error(), rid));
    } catch (const ErrorException& e) {
      respond(http::Response::error(e.error(), rid));
    } catch (const std::exception& e) {
      log::error("handler failed", {{"error", e.what()}, {"request_id", rid}});
      respond(http::Response::error(fail(Code::internal, "internal error"), rid));
    }
  });
  if (!queued) {
    respond(http::Response::error(fail(Code::overloaded, "server busy, retry shortly"), rid));
  }
}

int run(const Spec& spec) {
  Context ctx;
  ctx.name = spec.name;

  // config
  auto level = ctx.env.string("LOG_LEVEL", "info");
  auto port = ctx.env.port("PORT", spec.default_port);
  auto address = ctx.env.string("LISTEN_ADDRESS", spec.default_listen_address);
  auto io_threads = ctx.env.integer("HTTP_THREADS", std::min(2u, std::max(1u, std::thread::hardware_concurrency())), 1, 64);
  auto blocking_threads = ctx.env.integer("BLOCKING_THREADS", 8, 1, 256);
  auto db_url = ctx.env.string("DATABASE_URL", kDefaultDatabaseUrl);
  auto db_max = ctx.env.integer("DB_POOL_MAX", 50, 1, 1000);
  auto redis_url = ctx.env.string("REDIS_URL", "localhost:6379");
  auto redis_max = ctx.env.integer("REDIS_POOL_MAX", 100, 1, 10000);
  auto handoff = ctx.env.string("HANDOFF_SOCKET", "");
  for (const auto* r : {&level, &address, &db_url, &redis_url, &handoff}) {
    if (!*r) return init_failed("config", r->error().message);
  }
  for (const auto* r : {&io_threads, &blocking_threads, &db_max, &redis_max}) {
    if (!*r) return init_failed("config", r->error().message);
  }
  if (!port) return init_failed("config", port.error().message);
  auto internal_token = ctx.env.string("INTERNAL_TOKEN", "");
  if (!internal_token) return init_failed("config", internal_token.error().message);
  ctx.internal_token = *internal_token;
  if (!ctx.internal_token.empty() &&
      (ctx.internal_token.size() < 16 || ctx.internal_token.size() > 200 ||
       ctx.internal_token.find_first_of(" \t\r\n") != std::string::npos)) {
    return init_failed("config", "INTERNAL_TOKEN must be 16 to 200 characters without spaces");
  }
  if (spec.trusts_gateway && ctx.internal_token.empty() && !loopback(*address)) {
    return init_failed("config",
                       "INTERNAL_TOKEN is required when LISTEN_ADDRESS (" + *address +
                           ") is not loopback: anyone reaching the port could set X-User-ID");
  }
  auto redis_address = redis::parse_url(*redis_url);
  if (!redis_address) {
    return init_failed("config", "REDIS_URL must be host:port or redis://host:port/db, got \"" +
                                     *redis_url + "\"");
  }

  // logging
  log::init(spec.name, log::parse_level(*level, log::Level::info));
  log::info("starting", {{"port", static_cast<int>(*port)}});

  http::Runtime runtime(http::Runtime::Options{static_cast<int>(*io_threads),
                                               static_cast<int>(*blocking_threads), 4096});
  http::Router router;
  ctx.runtime = &runtime;
  ctx.router = &router;

  // database
  if (spec.uses_database) {
    db::PoolOptions po;
    po.max_connections = static_cast<std::size_t>(*db_max);
    po.application_name = "hydrox-" + spec.name;
    ctx.db = std::make_shared<db::Pool>(*db_url, po);
    if (auto r = ctx.db->ping(); !r) return init_failed("database", r.error().message);
  }

  // redis
  ctx.redis_address = *redis_address;
  redis::Options ro;
  ro.max_connections = static_cast<std::size_t>(*redis_max);
  ctx.redis = std::make_shared<redis::Client>(*redis_address, ro);
  if (auto r = ctx.redis->ping(); !r) return init_failed("redis", r.error().message);

  // the service's own state and routes
  add_builtin_routes(ctx, spec.builtin_health, spec.builtin_ops);
  if (spec.trusts_gateway) {
    // First of all middleware: identity headers without the internal token are nobody's, and a
    // `user_id` query parameter (which the api-contract lets clients send) is dropped unread.
    ctx.middleware.insert(ctx.middleware.begin(), [&ctx](http::Request& req, http::Respond&) {
      if (!from_gateway(ctx, req)) {
        for (std::string_view h : {std::string_view("X-User-ID"), std::string_view("X-Auth-Kind"),
                                   std::string_view("X-Auth-Scope"),
                                   std::string_view("X-Auth-Credential"), kLegacyModeHeader}) {
          http::remove_header(req.headers, h);
        }
      }
      if (!req.path.starts_with("/internal/")) drop_user_id_query(req);
      return false;
    });
  }
  if (spec.setup) {
    try {
      if (auto r = spec.setup(ctx); !r) return init_failed("setup", r.error().message);
    } catch (const std::exception& e) {
      return init_failed("setup", e.what());
    }
  }

  // listen
  http::ServerOptions so;
  so.service = spec.name;
  so.address = *address;
  so.port = *port;
  so.handoff_socket = *handoff;
  http::Server server(runtime, so, std::move(router));
  ctx.router = nullptr;  // moved into the server
  ctx.server = &server;
  for (auto& mw : ctx.middleware) server.use(std::move(mw));
  for (auto& t : ctx.tunnels) server.tunnel(std::move(t));
  for (auto& [path, handlers] : ctx.websockets) server.websocket(path, std::move(handlers), ctx.websocket_options);
  auto bound = server.start();
  if (!bound) return init_failed("listen", bound.error().message);
  ctx.port = *bound;
  if (spec.on_started) spec.on_started(ctx);

  // signals: stop accepting, drain in-flight requests, then leave.
  runtime.on_signal([&] {
    log::info("stopping");
    for (auto& f : ctx.on_signal) f();
    server.stop(std::chrono::milliseconds(5000));
    runtime.stop();
  });
  runtime.run();
  for (auto& f : ctx.on_stop) f();
  log::info("stopped");
  return 0;
}

bool from_gateway(const Context& ctx, const http::Request& req) {
  if (ctx.internal_token.empty()) return true;
  auto h = req.header(kInternalTokenHeader);
  return h && constant_time_equal(*h, ctx.internal_token);
}

std::vector<http::Header> internal_headers(const Context& ctx) {
  if (ctx.internal_token.empty()) return {};
  return {http::Header{std::string(kInternalTokenHeader), ctx.internal_token}};
}

Result<UserId> caller(const http::Request& req) {
  auto h = req.header("X-User-ID");
  auto id = h ? Uuid::parse(*h) : std::nullopt;
  if (!id) return fail(Code::unauthenticated, "authentication required");
  return UserId{*id};
}

Result<Page> page_params(const http::Request& req, std::int64_t default_limit, std::string_view before_means,
                         std::initializer_list<std::string_view> extra) {
  Page p;
  p.limit = default_limit;
  for (const auto& name : req.query_names()) {
    bool known = name == "limit" || name == "before";
    for (auto e : extra) known = known || name == e;
    if (!known) return fail(Code::unknown_field, "unknown query parameter " + name, name);
  }
  if (auto v = req.query_param("limit"); v && !v->empty()) {
    std::int64_t n = 0;
    bool ok = v->size() <= 4;  // (checked first: a longer run of digits would overflow n)
    for (std::size_t i = 0; ok && i < v->size(); ++i) {
      const char c = (*v)[i];
      ok = c >= '0' && c <= '9';
      n = n * 10 + (c - '0');
    }
    if (!ok || n < 1 || n > 1000) return fail(Code::invalid_field, "limit must be from 1 to 1000", "limit");
    p.limit = n;
  }
  if (auto v = req.query_param("before"); v && !v->empty()) {
    if (v->size() > 18 || v->find_first_not_of("0123456789") != std::string::npos) {
      return fail(Code::invalid_field, "before must be " + std::string(before_means), "before");
    }
    p.before = *v;
  }
  return p;
}

}  // namespace hydrox::service
