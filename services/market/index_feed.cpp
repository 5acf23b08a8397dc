// The development index feed: a seeded random walk per market, one sample per second, published
// on Redis (`hydrox:index:<SYMBOL>`) for trading's marks and kept in `hydrox:index:last:<SYMBOL>`
// for tickers. Integer arithmetic only: a step is the sum of four uniform draws in
// ±volatility ppm (close to a normal step), applied to the price and rounded to the tick.
#include <random>

#include "hydrox/core/clock.hpp"
#include "hydrox/events/events.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"
#include "market_app.hpp"

namespace hydrox::market {

Result<void> start_index_feed(Services& s) {
  auto seed = s.ctx->env.integer("INDEX_FEED_SEED", 20261126, 0, INT64_MAX);
  auto period = s.ctx->env.integer("INDEX_FEED_PERIOD_MS", 1000, 50, 60'000);
  if (!seed) return seed.error();
  if (!period) return period.error();
  struct Walk {
    std::mt19937_64 rng;
    engine::Price price;
  };
  auto walks = std::make_shared<std::vector<Walk>>();
  for (const auto& m : s.catalog.all()) {
    walks->push_back(Walk{std::mt19937_64(static_cast<std::uint64_t>(*seed) + static_cast<std::uint64_t>(m.id)), m.start_price});
  }
  const std::int64_t period_ms = *period;
  s.ctx->runtime->every(std::chrono::milliseconds(period_ms), [&s, walks, period_ms] {
    // Publishing blocks on Redis (bounded by its timeout): do it off the IO thread.
    std::vector<std::pair<std::string, std::string>> messages;
    const std::int64_t now = SystemClock::instance().now_ms();
    for (const auto& m : s.catalog.all()) {
      Walk& w = (*walks)[m.index];
      const std::int64_t vol = std::max<std::int64_t>(1, m.index_volatility_ppm * period_ms / 1000);
      std::uniform_int_distribution<std::int64_t> draw(-vol, vol);
      std::int64_t step_ppm = 0;
      for (int i = 0; i < 4; ++i) step_ppm += draw(w.rng);
      step_ppm /= 2;  // four draws: standard deviation ≈ vol × 1.15; halve toward vol
      __int128 next = static_cast<__int128>(w.price) * (1'000'000 + step_ppm);
      engine::Price p = static_cast<engine::Price>((next + 500'000) / 1'000'000);
      // Keep the walk within a factor of 4 of its start so a long run stays plausible.
      p = std::clamp<engine::Price>(p, std::max<engine::Price>(1, m.start_price / 4), m.start_price * 4);
      w.price = p;
      messages.emplace_back(m.symbol,
                            events::encode(events::IndexMessage{
                                m.symbol, catalog::Catalog::price_text(m, p), now, "simulated"}));
    }
    s.ctx->runtime->try_blocking([&s, messages = std::move(messages)] {
      std::vector<std::vector<std::string>> cmds;
      for (const auto& [symbol, body] : messages) {
        cmds.push_back({"PUBLISH", events::index_channel(symbol), body});
        cmds.push_back({"SET", events::index_last_key(symbol), body, "PX", "60000"});
      }
      if (auto r = s.ctx->redis->pipeline(cmds); !r) {
        static std::atomic<int> failures{0};
        if (failures.fetch_add(1) % 30 == 0) log::warn("index feed: redis unavailable", {{"error", r.error().message}});
      }
    });
  });
  log::info("index feed started", {{"source", "simulated"}, {"period_ms", period_ms}});
  return {};
}

}  // namespace hydrox::market
