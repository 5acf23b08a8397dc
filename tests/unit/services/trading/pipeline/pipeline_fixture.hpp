#pragma once
// A one-market catalog (BTC-like: tick 0.1, lot 0.001) and an engine that applies commands into a
// Batch the way the engine thread does: each command an Item with its events' range.
#include "../../../engine_fixture.hpp"
#include "markets.hpp"
#include "pipeline/batch.hpp"

namespace hydrox::trading::test {

using namespace hydrox::engine;
using engine::test::kUsdm;
using engine::test::user;

inline Catalog btc_catalog() {
  catalog::MarketInfo m;
  m.index = 0;
  m.id = 1;
  m.symbol = "BTC_USDM_PERP";
  m.spec = engine::test::btc_spec();
  m.tick_units = 1;
  m.tick_scale = 1;
  m.lot_units = 1;
  m.lot_scale = 3;
  return Catalog::from_markets({m});
}

inline const UserId kFeeAccount{Uuid{0x7000, 0x8000000000000001ull}};

struct Pipeline {
  Engine engine{[] {
    EngineConfig c;
    c.markets = {engine::test::btc_spec()};
    c.fee_account = kFeeAccount;
    return c;
  }()};
  std::uint64_t command_no = 0;
  std::uint64_t next_order = 1;

  void apply(Batch& b, Command c) {
    Item it;
    it.command = std::move(c);
    it.first_event = b.events.size();
    engine.apply(it.command, b.events);
    it.end_event = b.events.size();
    it.command_no = ++command_no;
    b.items.push_back(std::move(it));
  }
  PlaceOrder order(std::uint64_t u, Side side, Price price, Qty qty, std::int64_t ts,
                   TimeInForce tif = TimeInForce::gtc) {
    PlaceOrder p;
    p.user = user(u);
    p.id = OrderId{Uuid{0x9000, next_order++}};
    p.market = 0;
    p.side = side;
    p.price = price;
    p.qty = qty;
    p.tif = tif;
    p.leverage = 10;
    p.ts_ms = ts;
    return p;
  }
};

}  // namespace hydrox::trading::test
