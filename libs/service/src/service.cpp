#include "hydrox/service/service.hpp"

#include <cstdio>
#include <thread>

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

void add_builtin_routes(Context& ctx, bool health) {
  if (health) {
    ctx.router->get("/health", [name = ctx.name](http::Request&, http::Respond respond) {
      json::Writer w;
      w.begin_object().field("status", "ok").field("service", name).end_object();
      respond(http::Response::json(200, w.take()));
    });
  }
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
  add_builtin_routes(ctx, spec.builtin_health);
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
    server.stop(std::chrono::milliseconds(5000));
    runtime.stop();
  });
  runtime.run();
  for (auto& f : ctx.on_stop) f();
  log::info("stopped");
  return 0;
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
    bool ok = v->size() <= 4;
    for (char c : *v) {
      ok = ok && c >= '0' && c <= '9';
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
