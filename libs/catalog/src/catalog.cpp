#include "hydrox/catalog/catalog.hpp"

#include "hydrox/decimal/decimal.hpp"

namespace hydrox::catalog {



std::string usdm_text(engine::Usdm units) { return decimal::format(units, 6); }

Catalog Catalog::from_markets(std::vector<MarketInfo> markets) {
  Catalog cat;
  for (std::size_t i = 0; i < markets.size(); ++i) {
    markets[i].index = static_cast<std::uint32_t>(i);
    markets[i].spec.id = markets[i].index;
  }
  cat.markets_ = std::move(markets);
  return cat;
}

const MarketInfo* Catalog::find(std::string_view symbol) const {
  for (const auto& m : markets_) {
    if (m.symbol == symbol) return &m;
  }
  return nullptr;
}

const MarketInfo* Catalog::by_id(int id) const {
  for (const auto& m : markets_) {
    if (m.id == id) return &m;
  }
  return nullptr;
}

std::vector<engine::MarketSpec> Catalog::specs() const {
  std::vector<engine::MarketSpec> out;
  for (const auto& m : markets_) out.push_back(m.spec);
  return out;
}

namespace {
Result<std::int64_t> to_steps(const json::Value& v, std::string_view field, std::int64_t step_units,
                              int scale, std::string_view what, const std::string& step_text) {
  const std::string f(field);
  if (!v.is_number() && !v.is_string()) {
    return fail(Code::invalid_field, f + " must be a number or a decimal string", f);
  }
  auto d = v.as_decimal();
  if (!d) return fail(d.error().code == Code::number_out_of_range ? Code::number_out_of_range : Code::invalid_field,
                      f + " is not a valid decimal number", f);
  if (d->mantissa <= 0) return fail(Code::invalid_field, f + " must be positive", f);
  auto units = decimal::to_units(*d, scale, decimal::Rounding::exact);
  if (!units) {
    if (units.error().code == Code::too_many_decimals) {
      return fail(Code::too_many_decimals,
                  f + " has more decimals than the " + std::string(what) + " " + step_text + " allows", f);
    }
    return fail(Code::number_out_of_range, f + " is out of range", f);
  }
  if (*units % step_units != 0) {
    return fail(Code::invalid_field, f + " must be a multiple of the " + std::string(what) + " " + step_text, f);
  }
  const std::int64_t steps = *units / step_units;
  if (steps > 1'000'000'000'000LL) return fail(Code::number_out_of_range, f + " is out of range", f);
  return steps;
}
}  // namespace

Result<engine::Price> Catalog::to_ticks(const MarketInfo& m, const json::Value& v, std::string_view field) {
  return to_steps(v, field, m.tick_units, m.tick_scale, "tick size", m.tick_size);
}

Result<engine::Qty> Catalog::to_lots(const MarketInfo& m, const json::Value& v, std::string_view field) {
  return to_steps(v, field, m.lot_units, m.lot_scale, "lot size", m.lot_size);
}

std::string Catalog::price_text(const MarketInfo& m, engine::Price ticks) {
  return decimal::format(static_cast<decimal::i128>(ticks) * m.tick_units, m.tick_scale);
}

std::string Catalog::amount_text(const MarketInfo& m, engine::Qty lots) {
  return decimal::format(static_cast<decimal::i128>(lots) * m.lot_units, m.lot_scale);
}

void Catalog::write_price(json::Writer& w, const MarketInfo& m, engine::Price ticks) {
  w.raw_number(price_text(m, ticks));
}

void Catalog::write_amount(json::Writer& w, const MarketInfo& m, engine::Qty lots) {
  w.raw_number(amount_text(m, lots));
}

}  // namespace hydrox::catalog
