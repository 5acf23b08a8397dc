#pragma once
// Exact decimal arithmetic for money: parse decimal text without binary floating point, convert to
// integer units at a fixed scale with an explicit rounding mode, multiply/divide through 128 bits,
// and render plain decimal literals ("97250.5", never "9.72505e4").
#include "hydrox/core/error.hpp"

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace hydrox::decimal {

using i128 = __int128;

// Requirements round up, payouts round down (perp-rules.md); `exact` refuses any remainder.
enum class Rounding : std::uint8_t {
  exact,           // an inexact result is an error (too_many_decimals)
  down,            // toward negative infinity (floor)
  up,              // toward positive infinity (ceiling)
  toward_zero,     // truncate
  away_from_zero,
  half_up,         // nearest, ties away from zero
  half_even,       // nearest, ties to even (banker's)
};

inline constexpr int kMaxScale = 38;       // 10^38 still fits in a signed 128-bit integer
inline constexpr int kMaxDigits = 38;      // significant digits accepted from text
inline constexpr int kMaxExponent = 400;   // |e| beyond this is refused before any arithmetic

// value = mantissa * 10^-scale, normalized so the mantissa has no trailing zero digits past the
// point (scale is as small as possible, but never negative).
struct Decimal {
  i128 mantissa = 0;
  int scale = 0;
  friend bool operator==(const Decimal&, const Decimal&) = default;
};

// Accepts  -?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?  (the JSON number grammar, leading zeros allowed).
// Refuses '+', empty text, "1.", ".5", hex, inf/nan, whitespace, and values beyond 38 digits.
Result<Decimal> parse(std::string_view text);

// The integer count of 10^-scale units, e.g. to_units(97250.50, 1) == 972505. Fails with
// too_many_decimals (Rounding::exact and a remainder) or number_out_of_range (beyond int64).
Result<std::int64_t> to_units(const Decimal& d, int scale, Rounding mode = Rounding::exact);

// Parse then convert: the usual path for a request field.
Result<std::int64_t> parse_units(std::string_view text, int scale, Rounding mode = Rounding::exact);

// Plain decimal text of units * 10^-scale with trailing zeros trimmed: 972505,1 -> "97250.5".
std::string format(std::int64_t units, int scale);
std::string format(i128 units, int scale);
std::string format(const Decimal& d);

// num / den rounded by mode (den != 0). Fails only for Rounding::exact with a remainder.
Result<i128> div_round(i128 num, i128 den, Rounding mode);

// a * b / c through a 128-bit intermediate; fails on c == 0, an inexact exact, or an int64 overflow.
Result<std::int64_t> mul_div(std::int64_t a, std::int64_t b, std::int64_t c, Rounding mode);

// 10^n for 0 <= n <= 38.
i128 pow10(int n);

// Overflow-checked int64 arithmetic.
Result<std::int64_t> checked_add(std::int64_t a, std::int64_t b);
Result<std::int64_t> checked_sub(std::int64_t a, std::int64_t b);
Result<std::int64_t> checked_mul(std::int64_t a, std::int64_t b);
Result<std::int64_t> narrow(i128 v);

// A fixed-scale amount: Fixed<6> is USDM in 1e-6 units.
template <int Scale>
class Fixed {
  static_assert(Scale >= 0 && Scale <= 18);

 public:
  static constexpr int kScale = Scale;
  constexpr Fixed() = default;
  static constexpr Fixed from_units(std::int64_t u) { return Fixed(u); }
  static Result<Fixed> parse(std::string_view text, Rounding mode = Rounding::exact) {
    auto u = parse_units(text, Scale, mode);
    if (!u) return u.error();
    return Fixed(*u);
  }
  constexpr std::int64_t units() const { return units_; }
  std::string to_string() const { return format(units_, Scale); }
  friend constexpr auto operator<=>(const Fixed&, const Fixed&) = default;

 private:
  constexpr explicit Fixed(std::int64_t u) : units_(u) {}
  std::int64_t units_ = 0;
};

using Usdm = Fixed<6>;

}  // namespace hydrox::decimal
