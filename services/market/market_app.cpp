#include "market_app.hpp"

#include "hydrox/log/log.hpp"
#include "ws_hub.hpp"

namespace hydrox::market {

Result<void> setup(service::Context& ctx) {
  static Services services;  // lives as long as the process: handlers and timers use it
  Services& s = services;
  s.ctx = &ctx;
  auto trading = ctx.env.endpoint("TRADING_SERVICE_URL", "http://localhost:8082");
  if (!trading) return trading.error();
  s.trading = *trading;
  auto user_service = ctx.env.endpoint("USER_SERVICE_URL", "http://localhost:8084");
  if (!user_service) return user_service.error();
  s.user_service = *user_service;
  auto lease = ctx.db->acquire();
  if (!lease) return lease.error();
  auto cat = catalog::Catalog::load(**lease);
  if (!cat) return cat.error();
  s.catalog = std::move(*cat);
  http::ClientOptions co;
  co.connect_timeout = std::chrono::milliseconds(500);
  co.request_timeout = std::chrono::milliseconds(2000);
  s.client = std::make_shared<http::Client>(*ctx.runtime, co);
  register_market_routes(s, *ctx.router);
  http::WsOptions wo;
  auto recheck = ctx.env.integer("WS_AUTH_RECHECK_MS", 30'000, 100, 60'000);
  if (!recheck) return recheck.error();
  s.ws_auth_recheck_ms = *recheck;
  auto per_ip = ctx.env.integer("WS_MAX_CONNECTIONS_PER_IP", 1000, 1, 10'000'000);
  if (!per_ip) return per_ip.error();
  s.ws_max_connections_per_ip = *per_ip;
  auto inbound = ctx.env.integer("WS_MAX_MESSAGES_PER_S", Hub::kMaxInboundPerSecond, 1, 1'000'000);
  if (!inbound) return inbound.error();
  s.ws_max_messages_per_s = *inbound;
  auto order_burst = ctx.env.integer("WS_ORDER_BURST", static_cast<std::int64_t>(Hub::kOrderBurst), 1, 100'000'000);
  if (!order_burst) return order_burst.error();
  auto orders_per_s = ctx.env.integer("WS_ORDERS_PER_S", static_cast<std::int64_t>(Hub::kOrdersPerSecond), 1, 100'000'000);
  if (!orders_per_s) return orders_per_s.error();
  s.ws_order_burst = static_cast<double>(*order_burst);
  s.ws_orders_per_s = static_cast<double>(*orders_per_s);
  auto queued = ctx.env.integer("WS_MAX_QUEUED_MESSAGES", 4096, 8, 1'000'000);
  if (!queued) return queued.error();
  static std::shared_ptr<Hub> hub = std::make_shared<Hub>(s, static_cast<std::size_t>(*queued) * 2);
  hub->start();
  auto idle = ctx.env.integer("WS_IDLE_TIMEOUT_S", 60, 1, 3600);
  auto sndbuf = ctx.env.integer("WS_SOCKET_SEND_BUFFER", 256 * 1024, 4096, 64 << 20);
  if (!sndbuf) return sndbuf.error();
  wo.socket_send_buffer = static_cast<int>(*sndbuf);
  if (!idle) return idle.error();
  wo.max_queued_messages = static_cast<std::size_t>(*queued);
  wo.max_inbound_per_second = static_cast<std::uint32_t>(*inbound);
  wo.idle_timeout_s = static_cast<std::uint32_t>(*idle);
  ctx.websockets.emplace_back("/ws", hub->handlers());
  ctx.websocket_options = wo;
  ctx.on_stop.push_back([&s] {
    hub->stop();
    s.client.reset();  // its pooled sockets belong to the runtime, which goes next
  });
  auto feed = ctx.env.string("INDEX_FEED", "simulated");
  if (!feed) return feed.error();
  if (*feed == "simulated") {
    if (auto r = start_index_feed(s); !r) return r.error();
  } else if (*feed == "oracle") {
    if (auto r = start_oracle_feed(s, *ctx.router); !r) return r.error();
  } else if (*feed != "none") {
    return fail(Code::invalid_field, "INDEX_FEED must be simulated, oracle or none, got \"" + *feed + "\"", "INDEX_FEED");
  }
  return {};
}

}  // namespace hydrox::market
