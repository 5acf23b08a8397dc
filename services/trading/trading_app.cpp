#include "trading_app.hpp"

#include "hydrox/events/events.hpp"

#include <csignal>

#include "engine_lock.hpp"
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
  auto outage = ctx.env.integer("DB_OUTAGE_LIMIT_MS", 60'000, 1000, 3'600'000);
  if (!outage) return outage.error();
  auto snapshot_every = ctx.env.integer("SNAPSHOT_EVERY_COMMANDS", 100'000, 0, 1'000'000'000'000);
  if (!snapshot_every) return snapshot_every.error();
  auto snapshot_part = ctx.env.integer("SNAPSHOT_PART_BYTES", 32 << 20, 1024, 512 << 20);
  if (!snapshot_part) return snapshot_part.error();
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
  auto daily = ctx.env.string("WITHDRAWAL_DAILY_LIMIT", "100000");
  if (!daily) return daily.error();
  auto daily_units = decimal::parse_units(*daily, 6, decimal::Rounding::exact);
  if (!daily_units || *daily_units < 0 || *daily_units > engine::kMaxTotalUsdm) {
    return fail(Code::invalid_field, "WITHDRAWAL_DAILY_LIMIT must be a USDM amount (0: no limit)", "WITHDRAWAL_DAILY_LIMIT");
  }
  s.withdrawal_daily_limit = *daily_units;
  auto min_withdrawal = ctx.env.string("WITHDRAWAL_MIN", "1");
  if (!min_withdrawal) return min_withdrawal.error();
  auto min_units = decimal::parse_units(*min_withdrawal, 6, decimal::Rounding::exact);
  if (!min_units || *min_units < 1 || *min_units > engine::kMaxTotalUsdm) {
    return fail(Code::invalid_field, "WITHDRAWAL_MIN must be a positive USDM amount", "WITHDRAWAL_MIN");
  }
  s.withdrawal_min = *min_units;
  auto any_address = ctx.env.boolean("WITHDRAWAL_ANY_ADDRESS", false);
  if (!any_address) return any_address.error();
  s.withdrawal_any_address = *any_address;
  auto networks = ctx.env.string("AUTH_CARDANO_NETWORKS", "0,1");
  if (!networks) return networks.error();
  s.cardano_networks.clear();
  for (char c : *networks) {
    if (c == '0' || c == '1') s.cardano_networks.push_back(c - '0');
    else if (c != ',' && c != ' ') return fail(Code::invalid_field, "AUTH_CARDANO_NETWORKS must list 0 and/or 1", "AUTH_CARDANO_NETWORKS");
  }
  if (s.operator_token.empty()) log::warn("OPERATOR_TOKEN is unset: the operator API (deposits, faucet) is disabled");

  // One active engine: a standby started next to it waits here (not listening) until the active
  // process's session ends, then rebuilds from the journal like any start.
  // A waiting standby holds nothing and serves nothing: SIGTERM/SIGINT simply end it (the runtime's
  // handlers, which drain requests, are put back once the lock is held).
  struct sigaction dfl{}, old_term{}, old_int{};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGTERM, &dfl, &old_term);
  sigaction(SIGINT, &dfl, &old_int);
  auto writer = take_engine_lock(ctx.db->url(), LockWait::yes);
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGINT, &old_int, nullptr);
  if (!writer) return writer.error();

  auto lease = ctx.db->acquire();
  if (!lease) return lease.error();
  auto catalog = Catalog::load(**lease);
  if (!catalog) return catalog.error();
  s.catalog = std::move(*catalog);
  lease = fail(Code::internal, "released");

  HostOptions ho;
  ho.queue_capacity = static_cast<std::size_t>(*queue);
  ho.outage_limit = std::chrono::milliseconds(*outage);
  ho.snapshot_every = static_cast<std::uint64_t>(*snapshot_every);
  ho.snapshot_part_bytes = static_cast<std::size_t>(*snapshot_part);
  s.host = std::make_unique<EngineHost>(s.catalog, ctx.db, std::move(*writer), ctx.redis, ho);
  if (auto r = s.host->recover(SystemClock::instance().now_ms()); !r) return r.error();

  // The mark follows perp-rules from market's index feed and the book; funding settles on the
  // clock. MARK_FROM_INDEX=0 leaves marks to the operator route (tests that pin prices).
  auto follow_index = ctx.env.boolean("MARK_FROM_INDEX", true);
  auto mark_ms = ctx.env.integer("MARK_INTERVAL_MS", 1000, 50, 60'000);
  auto sample_ms = ctx.env.integer("FUNDING_SAMPLE_MS", 5000, 50, 3'600'000);
  auto interval_ms = ctx.env.integer("FUNDING_INTERVAL_MS", 3'600'000, 1000, 86'400'000);
  auto max_age = ctx.env.integer("INDEX_MAX_AGE_MS", 10'000, 500, 600'000);
  auto max_jump = ctx.env.integer("INDEX_MAX_JUMP_PPM", 500'000, 1000, 10'000'000);
  for (auto* r : {&mark_ms, &sample_ms, &interval_ms, &max_age, &max_jump}) {
    if (!*r) return r->error();
  }
  if (!follow_index) return follow_index.error();
  if (*follow_index) {
    MarkOptions mo;
    mo.period_ms = *mark_ms;
    mo.premium_sample_ms = *sample_ms;
    mo.funding_interval_ms = *interval_ms;
    mo.index_max_age_ms = *max_age;
    mo.index_max_jump_ppm = *max_jump;
    s.marks = std::make_unique<MarkFunding>(s.catalog, *s.host, ctx.redis, mo);  // before the host starts
  }
  s.host->start();
  if (s.marks) {
    s.index_feed = std::make_unique<redis::Subscriber>(
        ctx.redis_address, std::vector<std::string>{},
        std::vector<std::string>{events::index_channel("*")},
        [&s](std::string_view, std::string_view message) {
          s.marks->on_index(message, SystemClock::instance().now_ms());
        });
    s.marks->start();
    log::info("mark price and funding clock started",
              {{"mark_interval_ms", *mark_ms}, {"funding_interval_ms", *interval_ms}, {"premium_sample_ms", *sample_ms}});
  }

  ctx.on_stop.push_back([&s] {
    s.index_feed.reset();
    if (s.marks) s.marks->stop();
    s.host->stop();
  });

  register_order_routes(s, *ctx.router);
  register_position_routes(s, *ctx.router);
  register_internal_routes(s, *ctx.router);
  register_history_routes(s, *ctx.router);
  register_withdrawal_routes(s, *ctx.router);
  return {};
}

}  // namespace hydrox::trading
