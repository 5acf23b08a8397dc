#pragma once
// Shared helpers for the engine tests: a BTC-like market (tick 0.1, lot 0.001, so one tick·lot is
// 100e-6 USDM), users, and shorthands for commands.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "hydrox/engine/engine.hpp"

namespace hydrox::engine::test {

inline constexpr Usdm kUsdm = 1'000'000;  // one USDM in units

inline MarketSpec btc_spec() {
  MarketSpec m;
  m.notional_num = 100;  // 0.1 USDM tick × 0.001 BTC lot = 0.0001 USDM = 100 units
  m.notional_den = 1;
  m.min_notional = 100 * kUsdm;
  m.max_leverage = 40;
  m.maker_fee_ppm = 200;
  m.taker_fee_ppm = 500;
  return m;
}

inline EngineConfig two_market_config() {
  EngineConfig c;
  c.markets = {btc_spec(), btc_spec()};
  c.markets[1].notional_num = 1;   // a market where one tick·lot is 1/3 unit: exercises rounding
  c.markets[1].notional_den = 3;
  c.markets[1].min_notional = 0;
  c.markets[1].max_leverage = 20;
  return c;
}

inline UserId user(std::uint64_t n) { return UserId{Uuid{0x1000 + n, 0x8000000000000000ull + n}}; }

template <class E>
struct Harness {
  Harness() = default;
  explicit Harness(EngineConfig c) : engine(std::move(c)) {}
  E engine{two_market_config()};
  std::vector<Event> events;
  std::uint64_t next_order = 1;

  std::vector<Event> run(const Command& c) {
    events.clear();
    engine.apply(c, events);
    auto err = engine.check_invariants();
    EXPECT_EQ(err, "");
    return events;
  }
  OrderId new_id() { return OrderId{Uuid{0x9000, next_order++}}; }
  std::vector<Event> deposit(std::uint64_t u, Usdm amount) { return run(Deposit{user(u), amount, 0}); }
  std::vector<Event> mark(Price p, std::uint32_t m = 0) { return run(SetMark{m, p, 0}); }
  PlaceOrder order(std::uint64_t u, Side side, Price price, Qty qty, TimeInForce tif = TimeInForce::gtc) {
    PlaceOrder p;
    p.user = user(u);
    p.id = new_id();
    p.market = 0;
    p.side = side;
    p.price = price;
    p.qty = qty;
    p.tif = tif;
    return p;
  }
  std::vector<Event> place(std::uint64_t u, Side side, Price price, Qty qty,
                           TimeInForce tif = TimeInForce::gtc) {
    return run(order(u, side, price, qty, tif));
  }
};

template <class T>
std::vector<T> all_of(const std::vector<Event>& events) {
  std::vector<T> out;
  for (const auto& e : events) {
    if (auto* x = std::get_if<T>(&e.body)) out.push_back(*x);
  }
  return out;
}

template <class T>
T only(const std::vector<Event>& events) {
  auto v = all_of<T>(events);
  EXPECT_EQ(v.size(), 1u);
  return v.empty() ? T{} : v.front();
}

}  // namespace hydrox::engine::test
