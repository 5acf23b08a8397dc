#include "trading_app.hpp"

#include "handlers/common.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/json/json.hpp"
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

  // Until the mark-price rules (issue #7) land, the mark follows the index published by market.
  auto follow_index = ctx.env.boolean("MARK_FROM_INDEX", true);
  if (!follow_index) return follow_index.error();
  if (*follow_index) {
    s.index_feed = std::make_unique<redis::Subscriber>(
        ctx.redis_address, std::vector<std::string>{}, std::vector<std::string>{"hydrox:index:*"},
        [&s](std::string_view, std::string_view message) {
          auto doc = json::parse(message);
          if (!doc || !doc->is_object()) return;
          const json::Value* sym = doc->find("symbol");
          const json::Value* price = doc->find("price");
          const json::Value* ts = doc->find("time_ms");
          const MarketInfo* m = sym && sym->is_string() ? s.catalog.find(sym->as_string()) : nullptr;
          if (!m || !price || !ts) return;
          auto ticks = Catalog::to_ticks(*m, *price, "price");
          auto when = ts->as_int(0, INT64_MAX);
          if (!ticks || !when) return;
          Job job;
          job.command = engine::SetMark{m->index, *ticks, *when};
          s.host->submit(std::move(job));  // a full queue drops this sample; the next one follows
        });
  }

  ctx.on_stop.push_back([&s] {
    s.index_feed.reset();
    s.host->stop();
  });

  register_order_routes(s, *ctx.router);
  register_position_routes(s, *ctx.router);
  register_internal_routes(s, *ctx.router);
  return {};
}

}  // namespace hydrox::trading
