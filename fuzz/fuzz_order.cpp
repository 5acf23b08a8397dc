// POST /api/v1/orders bodies against a BTC-like market (tick 0.1, lot 0.001): either a 400-class
// error, or an order whose fields are in range.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "order_parse.hpp"

using namespace hydrox;

namespace {
const catalog::Catalog& markets() {
  static const catalog::Catalog cat = [] {
    catalog::MarketInfo m;
    m.id = 1;
    m.symbol = "BTC_USDM_PERP";
    m.tick_units = 1;
    m.tick_scale = 1;
    m.lot_units = 1;
    m.lot_scale = 3;
    m.tick_size = "0.1";
    m.lot_size = "0.001";
    m.min_notional = "10";
    m.spec.notional_num = 100;
    m.spec.notional_den = 1;
    m.spec.max_leverage = 40;
    return catalog::Catalog::from_markets({m});
  }();
  return cat;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto o = trading::parse_order(markets(), body, UserId{Uuid{1, 2}}, 1'795'000'000'000);
  if (!o) {
    if (o.error().code == Code::internal) __builtin_trap();  // bad input is never an internal error
    return 0;
  }
  if (o->qty <= 0 || o->price < 0 || o->trigger_price < 0) __builtin_trap();
  if (o->leverage < 0 || o->leverage > 40) __builtin_trap();
  return 0;
}
