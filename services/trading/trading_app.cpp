#include "trading_app.hpp"

#include "handlers/common.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/log/log.hpp"

namespace hydrox::trading {

Result<void> setup(service::Context& ctx) {
  auto token = ctx.env.string("OPERATOR_TOKEN", "");
  auto faucet = ctx.env.string("FAUCET_AMOUNT", "0");
  auto queue = ctx.env.integer("ENGINE_QUEUE_CAPACITY", 20'000, 100, 10'000'000);
  if (!token) return token.error();
  if (!faucet) return faucet.error();
  if (!queue) return queue.error();
  auto faucet_units = decimal::parse_units(*faucet, 6, decimal::Rounding::exact);
  if (!faucet_units || *faucet_units < 0) {
    return fail(Code::invalid_field, "FAUCET_AMOUNT must be a USDM amount with at most 6 decimals, got \"" + *faucet + "\"",
                "FAUCET_AMOUNT");
  }

  // Lives as long as the process: the handlers and the engine threads use it.
  static Services services;
  Services& s = services;
  s.ctx = &ctx;
  s.operator_token = *token;
  s.faucet_amount = *faucet_units;
  if (s.operator_token.empty()) log::warn("OPERATOR_TOKEN is unset: the operator API (deposits, faucet) is disabled");

  auto lease = ctx.db->acquire();
  if (!lease) return lease.error();
  auto catalog = Catalog::load(**lease);
  if (!catalog) return catalog.error();
  s.catalog = std::move(*catalog);
  lease = fail(Code::internal, "released");

  HostOptions ho;
  ho.queue_capacity = static_cast<std::size_t>(*queue);
  s.host = std::make_unique<EngineHost>(s.catalog, ctx.db, ctx.redis, ho);
  if (auto r = s.host->recover(SystemClock::instance().now_ms()); !r) return r.error();
  s.host->start();

  register_order_routes(s, *ctx.router);
  register_position_routes(s, *ctx.router);
  register_internal_routes(s, *ctx.router);
  return {};
}

}  // namespace hydrox::trading
