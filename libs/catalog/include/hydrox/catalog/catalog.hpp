#pragma once
// The listed markets (the markets table): engine specs plus the decimal rules used to turn
// request text into ticks and lots exactly, and back. Shared by trading and market.
#include <string>
#include <vector>

#include "hydrox/core/error.hpp"
#include "hydrox/db/db.hpp"
#include "hydrox/engine/types.hpp"
#include "hydrox/json/json.hpp"

namespace hydrox::catalog {

struct MarketInfo {
  std::uint32_t index = 0;  // the engine's market number
  int id = 0;               // markets.id
  std::string symbol;
  engine::MarketSpec spec;
  std::int64_t tick_units = 1;  // tick = tick_units × 10^-tick_scale
  int tick_scale = 0;
  std::int64_t lot_units = 1;
  int lot_scale = 0;
  std::string tick_size, lot_size, min_notional;  // as in the database, for the API
  // The limits (spec.max_order_qty ... max_position_notional) as in the database, for the API.
  std::string max_order_size, max_market_order_size, max_order_notional, max_position_notional;
  engine::Price start_price = 0;  // ticks; the first mark when none was ever set
  std::int64_t index_volatility_ppm = 0;  // development feed: per-second volatility, 1e-6 units
  engine::Usdm impact_notional = 10'000'000'000;  // funding: the impact order's size (1e-6 USDM)
};

class Catalog {
 public:
  static Result<Catalog> load(db::Connection& c);
  static Catalog from_markets(std::vector<MarketInfo> markets);  // tests and fuzz targets
  const MarketInfo* find(std::string_view symbol) const;
  const MarketInfo* by_id(int id) const;
  const MarketInfo& at(std::uint32_t index) const { return markets_[index]; }
  const std::vector<MarketInfo>& all() const { return markets_; }
  std::vector<engine::MarketSpec> specs() const;

  // Request values (a JSON number or a decimal string), exactly: 400 naming `field` when not a
  // positive multiple of the tick/lot, with more decimals than it allows, or absurdly large.
  static Result<engine::Price> to_ticks(const MarketInfo& m, const json::Value& v, std::string_view field);
  static Result<engine::Qty> to_lots(const MarketInfo& m, const json::Value& v, std::string_view field);
  static std::string price_text(const MarketInfo& m, engine::Price ticks);
  static std::string amount_text(const MarketInfo& m, engine::Qty lots);
  // The same values rendered as JSON number literals.
  static void write_price(json::Writer& w, const MarketInfo& m, engine::Price ticks);
  static void write_amount(json::Writer& w, const MarketInfo& m, engine::Qty lots);

 private:
  std::vector<MarketInfo> markets_;
};

// USDM (1e-6 units) as text / JSON.
std::string usdm_text(engine::Usdm units);

}  // namespace hydrox::catalog
