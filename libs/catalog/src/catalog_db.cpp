// Catalog::load: the markets table → MarketInfo (kept apart from the pure conversions in
// catalog.cpp, which the fuzz targets build without a database library).
#include "hydrox/catalog/catalog.hpp"

#include <algorithm>
#include <optional>

#include "hydrox/decimal/decimal.hpp"

namespace hydrox::catalog {

namespace {

constexpr db::Query kMarkets{
    "trading_markets",
    "SELECT id, symbol, tick_size::text, lot_size::text, min_notional::text, max_leverage,"
    " maker_fee_rate::text, taker_fee_rate::text, index_start_price::text, index_volatility::text,"
    " impact_notional::text, max_order_size::text, max_market_order_size::text,"
    " max_order_notional::text, max_position_notional::text"
    " FROM markets WHERE status <> 'delisted' ORDER BY id"};

// "0.100" → units 1, scale 1 (trailing zeros dropped).
Result<std::pair<std::int64_t, int>> split(std::string_view text) {
  auto d = decimal::parse(text);
  if (!d) return d.error();
  auto units = decimal::narrow(d->mantissa);
  if (!units) return units.error();
  return std::make_pair(*units, d->scale);
}

Result<std::int64_t> ppm(std::string_view rate) {
  auto d = decimal::parse(rate);
  if (!d) return d.error();
  return decimal::to_units(*d, 6, decimal::Rounding::exact);
}

}  // namespace

Result<Catalog> Catalog::load(db::Connection& c) {
  auto rows = c.exec(kMarkets);
  if (!rows) return rows.error();
  Catalog cat;
  for (int r = 0; r < rows->size(); ++r) {
    MarketInfo m;
    m.index = static_cast<std::uint32_t>(r);
    m.id = std::stoi(std::string(rows->get(r, 0)));
    m.symbol = std::string(rows->get(r, 1));
    m.tick_size = decimal::format(*decimal::parse(rows->get(r, 2)));
    m.lot_size = decimal::format(*decimal::parse(rows->get(r, 3)));
    m.min_notional = decimal::format(*decimal::parse(rows->get(r, 4)));
    auto tick = split(rows->get(r, 2));
    auto lot = split(rows->get(r, 3));
    if (!tick || !lot) return fail(Code::internal, "bad tick or lot for " + m.symbol);
    std::tie(m.tick_units, m.tick_scale) = *tick;
    std::tie(m.lot_units, m.lot_scale) = *lot;
    // One tick·lot in 1e-6 USDM: tick_units × lot_units × 10^(6 - tick_scale - lot_scale).
    const int exp = 6 - m.tick_scale - m.lot_scale;
    m.spec.notional_num = m.tick_units * m.lot_units;
    m.spec.notional_den = 1;
    if (exp >= 0) {
      m.spec.notional_num *= static_cast<std::int64_t>(decimal::pow10(exp));
    } else {
      m.spec.notional_den = static_cast<std::int64_t>(decimal::pow10(-exp));
    }
    auto min_notional = decimal::parse_units(rows->get(r, 4), 6, decimal::Rounding::up);
    auto maker = ppm(rows->get(r, 6));
    auto taker = ppm(rows->get(r, 7));
    if (!min_notional || !maker || !taker) return fail(Code::internal, "bad rules for " + m.symbol);
    m.spec.min_notional = *min_notional;
    m.spec.max_leverage = std::stoi(std::string(rows->get(r, 5)));
    m.spec.maker_fee_ppm = static_cast<std::int32_t>(*maker);
    m.spec.taker_fee_ppm = static_cast<std::int32_t>(*taker);
    m.spec.id = m.index;
    auto start = decimal::parse(rows->get(r, 8));
    if (!start) return fail(Code::internal, "bad start price for " + m.symbol);
    auto start_units = decimal::to_units(*start, m.tick_scale, decimal::Rounding::half_even);
    if (!start_units) return fail(Code::internal, "bad start price for " + m.symbol);
    m.start_price = *start_units / m.tick_units;
    auto vol = decimal::parse_units(rows->get(r, 9), 6, decimal::Rounding::half_even);
    m.index_volatility_ppm = vol ? *vol : 0;
    auto impact = decimal::parse_units(rows->get(r, 10), 6, decimal::Rounding::up);
    if (!impact || *impact <= 0) return fail(Code::internal, "bad impact notional for " + m.symbol);
    m.impact_notional = *impact;
    // Limits: sizes in whole lots (rounded down), notionals in 1e-6 USDM, each at most the
    // engine's ceiling (the MarketSpec defaults).
    auto lots_of = [&](std::string_view text) -> std::optional<engine::Qty> {
      auto units = decimal::parse_units(text, m.lot_scale, decimal::Rounding::down);
      if (!units || *units <= 0) return std::nullopt;
      return std::min<engine::Qty>(*units / m.lot_units, engine::MarketSpec{}.max_order_qty);
    };
    auto max_order = lots_of(rows->get(r, 11));
    auto max_market = lots_of(rows->get(r, 12));
    auto max_order_notional = decimal::parse_units(rows->get(r, 13), 6, decimal::Rounding::down);
    auto max_position_notional = decimal::parse_units(rows->get(r, 14), 6, decimal::Rounding::down);
    if (!max_order || !max_market || !max_order_notional || !max_position_notional ||
        *max_order_notional <= 0 || *max_position_notional <= 0) {
      return fail(Code::internal, "bad limits for " + m.symbol);
    }
    m.spec.max_order_qty = *max_order;
    m.spec.max_market_order_qty = std::min(*max_market, *max_order);
    m.spec.max_order_notional =
        std::min(*max_order_notional, engine::MarketSpec{}.max_order_notional);
    m.spec.max_position_notional =
        std::min(*max_position_notional, engine::MarketSpec{}.max_position_notional);
    m.max_order_size = decimal::format(*decimal::parse(rows->get(r, 11)));
    m.max_market_order_size = decimal::format(*decimal::parse(rows->get(r, 12)));
    m.max_order_notional = decimal::format(*decimal::parse(rows->get(r, 13)));
    m.max_position_notional = decimal::format(*decimal::parse(rows->get(r, 14)));
    cat.markets_.push_back(std::move(m));
  }
  return cat;
}

}  // namespace hydrox::catalog
