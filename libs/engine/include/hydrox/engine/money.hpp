#pragma once
// Integer money arithmetic of the engine (perp-rules "Units"): exact, 128-bit where a product can
// exceed 64 bits, with a 64-bit path for what every real order takes. Inline so that the engine's
// hot path (pre-trade margin, fills) compiles to a few multiplies and a division instead of calls:
// GCC turns every 128-bit division into a call to __divti3, even by a constant.
#include <cstdint>
#include <limits>

#include "hydrox/engine/types.hpp"

namespace hydrox::engine::money {

using i128 = __int128;

// Amounts are bounded far below int64 by order and deposit limits; a breach is a bug.
[[noreturn]] void overflow();

[[gnu::always_inline]] inline bool fits64(i128 v) {
  return v >= std::numeric_limits<std::int64_t>::min() && v <= std::numeric_limits<std::int64_t>::max();
}
[[gnu::always_inline]] inline Usdm clamp64(i128 v) {
  if (!fits64(v)) [[unlikely]] overflow();
  return static_cast<Usdm>(v);
}

// 64-bit divisions by a positive divisor, rounded up / down (one idiv: quotient and remainder).
[[gnu::always_inline]] inline std::int64_t ceil_div64(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return q + (a % b > 0 ? 1 : 0);
}
[[gnu::always_inline]] inline std::int64_t floor_div64(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return q - (a % b < 0 ? 1 : 0);
}

[[gnu::always_inline]] inline i128 ceil_div(i128 a, i128 b) {  // b > 0
  if (fits64(a) && fits64(b)) return ceil_div64(static_cast<std::int64_t>(a), static_cast<std::int64_t>(b));
  return a >= 0 ? (a + b - 1) / b : a / b;
}
[[gnu::always_inline]] inline i128 floor_div(i128 a, i128 b) {  // b > 0
  if (fits64(a) && fits64(b)) return floor_div64(static_cast<std::int64_t>(a), static_cast<std::int64_t>(b));
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
[[gnu::always_inline]] inline i128 trunc_div(i128 a, i128 b) {  // toward zero, like `/`
  if (fits64(a) && fits64(b)) return static_cast<std::int64_t>(a) / static_cast<std::int64_t>(b);
  return a / b;
}
// The 64-bit product a × b × c, or false when it does not fit.
[[gnu::always_inline]] inline bool mul3_64(std::int64_t a, std::int64_t b, std::int64_t c, std::int64_t& out) {
  std::int64_t ab = 0;
  return !__builtin_mul_overflow(a, b, &ab) && !__builtin_mul_overflow(ab, c, &out);
}

// price × qty in USDM units (floor), or false when it does not fit 64 bits: for values that come
// from outside (an order's size and price, a mark, a funding index) before anything uses them.
[[gnu::always_inline]] inline bool notional_checked(const MarketSpec& s, Price price, Qty qty,
                                                    Usdm& out) {
  if (price < 0 || qty < 0) return false;
  std::int64_t n = 0;
  if (mul3_64(price, qty, s.notional_num, n)) [[likely]] {
    out = s.notional_den == 1 ? n : floor_div64(n, s.notional_den);
    return true;
  }
  i128 pq = 0, w = 0;
  if (__builtin_mul_overflow(static_cast<i128>(price), static_cast<i128>(qty), &pq) ||
      __builtin_mul_overflow(pq, static_cast<i128>(s.notional_num), &w)) {
    return false;
  }
  const i128 r = w / s.notional_den;
  if (!fits64(r)) return false;
  out = static_cast<Usdm>(r);
  return true;
}

// The slow halves (128-bit), out of line.
Usdm notional_wide(const MarketSpec& s, Price price, Qty qty);
Usdm margin_wide(const MarketSpec& s, Price price, Qty qty, std::int64_t divisor);

// price × qty in USDM units, floor.
[[gnu::always_inline]] inline Usdm notional(const MarketSpec& s, Price price, Qty qty) {
  std::int64_t n = 0;
  if (!mul3_64(price, qty, s.notional_num, n)) [[unlikely]] return notional_wide(s, price, qty);
  return s.notional_den == 1 ? n : floor_div64(n, s.notional_den);  // most markets: no division
}
// ceil(price × qty × num / (den × divisor)): initial margin (divisor = leverage), maintenance
// (divisor = 2 × max leverage).
[[gnu::always_inline]] inline Usdm margin(const MarketSpec& s, Price price, Qty qty, std::int64_t divisor) {
  std::int64_t n = 0, d = 0;
  if (!mul3_64(price, qty, s.notional_num, n) || __builtin_mul_overflow(s.notional_den, divisor, &d)) [[unlikely]] {
    return margin_wide(s, price, qty, divisor);
  }
  return ceil_div64(n, d);
}
[[gnu::always_inline]] inline Usdm initial_margin(const MarketSpec& s, Price price, Qty qty, std::int32_t leverage) {
  return margin(s, price, qty, leverage);
}
[[gnu::always_inline]] inline Usdm maintenance_margin(const MarketSpec& s, Price price, Qty qty) {
  return margin(s, price, qty, 2 * static_cast<std::int64_t>(s.max_leverage));
}
// ceil(n × ppm / 10^6).
[[gnu::always_inline]] inline Usdm fee(Usdm n, std::int32_t ppm) {
  std::int64_t x = 0;
  if (__builtin_mul_overflow(n, static_cast<std::int64_t>(ppm), &x)) [[unlikely]] {
    return clamp64(ceil_div(static_cast<i128>(n) * ppm, 1'000'000));
  }
  return ceil_div64(x, 1'000'000);
}

}  // namespace hydrox::engine::money
