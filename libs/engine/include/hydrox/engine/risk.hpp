#pragma once
// Pure risk formulas of perp-rules.md in integer units.
#include <cstdlib>

#include "hydrox/engine/types.hpp"

namespace hydrox::engine {

// Liquidation price (perp-rules "Margin"): liq = entry - side * A / size / (1 - mmr * side), with
// mmr = 1 / (2 * max_leverage), entry = cost / size and A = margin available (account value - MM,
// or isolated margin - MM). In ticks, rounded toward the entry (a long's liquidation price rounds
// up, a short's down), never below zero. size and cost are signed like the position.
inline Price liquidation_price(const MarketSpec& spec, Qty size, Usdm cost, Usdm margin_available) {
  using i128 = __int128;
  if (size == 0) return 0;
  const int side = size > 0 ? 1 : -1;
  const i128 two_l = 2 * static_cast<i128>(spec.max_leverage);
  const i128 s = size > 0 ? size : -size;
  const i128 c = cost > 0 ? cost : -cost;
  const i128 num = static_cast<i128>(spec.notional_den) * (c * (two_l - side) - side * static_cast<i128>(margin_available) * two_l);
  const i128 den = s * spec.notional_num * (two_l - side);
  i128 q = num / den;
  const i128 r = num % den;
  if (r != 0 && side > 0 && num > 0) q += 1;  // long: round up
  if (r != 0 && side < 0 && num < 0) q -= 1;
  return q < 0 ? 0 : static_cast<Price>(q);
}

}  // namespace hydrox::engine
