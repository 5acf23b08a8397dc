#include "hydrox/decimal/decimal.hpp"

#include <array>
#include <limits>

namespace hydrox::decimal {
namespace {

constexpr i128 kI128Max = static_cast<i128>((static_cast<unsigned __int128>(1) << 127) - 1);

constexpr std::array<i128, kMaxScale + 1> make_pow10() {
  std::array<i128, kMaxScale + 1> p{};
  p[0] = 1;
  for (int i = 1; i <= kMaxScale; ++i) p[i] = p[i - 1] * 10;
  return p;
}
constexpr auto kPow10 = make_pow10();

Error out_of_range(std::string msg = "number out of range") {
  return fail(Code::number_out_of_range, std::move(msg));
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

i128 pow10(int n) { return kPow10[static_cast<std::size_t>(n)]; }

Result<Decimal> parse(std::string_view text) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  bool negative = false;
  if (i < n && text[i] == '-') {
    negative = true;
    ++i;
  }
  if (i >= n || !is_digit(text[i])) return fail(Code::invalid_field, "not a decimal number");

  i128 mantissa = 0;
  int significant = 0;  // digits after leading zeros
  int frac_digits = 0;
  auto push_digit = [&](char c) -> bool {
    int d = c - '0';
    if (significant == 0 && d == 0) return true;  // leading zero: no effect on the value
    if (++significant > kMaxDigits) return false;
    mantissa = mantissa * 10 + d;
    return true;
  };
  for (; i < n && is_digit(text[i]); ++i) {
    if (!push_digit(text[i])) return out_of_range("more than 38 significant digits");
  }
  if (i < n && text[i] == '.') {
    ++i;
    if (i >= n || !is_digit(text[i])) return fail(Code::invalid_field, "not a decimal number");
    for (; i < n && is_digit(text[i]); ++i) {
      if (!push_digit(text[i])) return out_of_range("more than 38 significant digits");
      ++frac_digits;
    }
  }
  long exponent = 0;
  if (i < n && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < n && (text[i] == '+' || text[i] == '-')) {
      exp_negative = text[i] == '-';
      ++i;
    }
    if (i >= n || !is_digit(text[i])) return fail(Code::invalid_field, "not a decimal number");
    for (; i < n && is_digit(text[i]); ++i) {
      exponent = exponent * 10 + (text[i] - '0');
      if (exponent > kMaxExponent) return out_of_range("exponent out of range");
    }
    if (exp_negative) exponent = -exponent;
  }
  if (i != n) return fail(Code::invalid_field, "not a decimal number");

  // value = mantissa * 10^(exponent - frac_digits)
  long scale = static_cast<long>(frac_digits) - exponent;
  if (mantissa == 0) return Decimal{0, 0};
  while (scale > 0 && mantissa % 10 == 0) {
    mantissa /= 10;
    --scale;
  }
  if (scale < 0) {
    // Shift the point right; the product must still fit in 128 bits.
    if (-scale > kMaxScale) return out_of_range();
    i128 factor = kPow10[static_cast<std::size_t>(-scale)];
    if (mantissa > kI128Max / factor) return out_of_range();
    mantissa *= factor;
    scale = 0;
    // At most 38 digits in all, as for plain text (so that format → parse round-trips; found by
    // fuzz/fuzz_decimal: "12347e34" parsed, its 39-digit plain form did not).
    if (mantissa >= kPow10[38]) return out_of_range("more than 38 digits");
  }
  if (scale > kMaxScale) return out_of_range("more than 38 decimal places");
  return Decimal{negative ? -mantissa : mantissa, static_cast<int>(scale)};
}

Result<i128> div_round(i128 num, i128 den, Rounding mode) {
  if (den == 0) return fail(Code::internal, "division by zero");
  if (den < 0) {
    num = -num;
    den = -den;
  }
  i128 q = num / den;
  i128 r = num % den;
  if (r == 0) return q;
  const int sign = num < 0 ? -1 : 1;
  const i128 abs_r = r < 0 ? -r : r;
  switch (mode) {
    case Rounding::exact:
      return fail(Code::too_many_decimals, "more decimal places than allowed");
    case Rounding::toward_zero:
      return q;
    case Rounding::down:
      return r < 0 ? q - 1 : q;
    case Rounding::up:
      return r > 0 ? q + 1 : q;
    case Rounding::away_from_zero:
      return q + sign;
    case Rounding::half_up:
      return (abs_r >= den - abs_r) ? q + sign : q;
    case Rounding::half_even: {
      i128 rest = den - abs_r;
      if (abs_r > rest) return q + sign;
      if (abs_r < rest) return q;
      return (q % 2 != 0) ? q + sign : q;
    }
  }
  return q;
}

Result<std::int64_t> narrow(i128 v) {
  if (v > std::numeric_limits<std::int64_t>::max() || v < std::numeric_limits<std::int64_t>::min()) {
    return out_of_range();
  }
  return static_cast<std::int64_t>(v);
}

Result<std::int64_t> to_units(const Decimal& d, int scale, Rounding mode) {
  if (scale < 0 || scale > kMaxScale) return fail(Code::internal, "scale out of range");
  if (scale >= d.scale) {
    i128 factor = kPow10[static_cast<std::size_t>(scale - d.scale)];
    i128 m = d.mantissa < 0 ? -d.mantissa : d.mantissa;
    if (m > kI128Max / factor) return out_of_range();
    return narrow(d.mantissa * factor);
  }
  auto q = div_round(d.mantissa, kPow10[static_cast<std::size_t>(d.scale - scale)], mode);
  if (!q) return q.error();
  return narrow(*q);
}

Result<std::int64_t> parse_units(std::string_view text, int scale, Rounding mode) {
  auto d = parse(text);
  if (!d) return d.error();
  return to_units(*d, scale, mode);
}

std::string format(i128 units, int scale) {
  const bool negative = units < 0;
  // Work in unsigned so that the most negative value still renders.
  unsigned __int128 v = negative ? static_cast<unsigned __int128>(-(units + 1)) + 1
                                 : static_cast<unsigned __int128>(units);
  char digits[48];
  int len = 0;
  do {
    digits[len++] = static_cast<char>('0' + static_cast<int>(v % 10));
    v /= 10;
  } while (v != 0);
  while (len <= scale) digits[len++] = '0';  // at least one digit before the point
  int first_kept = 0;                        // trim trailing fractional zeros
  while (first_kept < scale && digits[first_kept] == '0') ++first_kept;

  std::string out;
  out.reserve(static_cast<std::size_t>(len + 2));
  bool is_zero = true;
  for (int k = len - 1; k >= first_kept; --k) is_zero = is_zero && digits[k] == '0';
  if (negative && !is_zero) out.push_back('-');
  for (int k = len - 1; k >= scale; --k) out.push_back(digits[k]);
  if (first_kept < scale) {
    out.push_back('.');
    for (int k = scale - 1; k >= first_kept; --k) out.push_back(digits[k]);
  }
  return out;
}

std::string format(std::int64_t units, int scale) { return format(static_cast<i128>(units), scale); }
std::string format(const Decimal& d) { return format(d.mantissa, d.scale); }

Result<std::int64_t> mul_div(std::int64_t a, std::int64_t b, std::int64_t c, Rounding mode) {
  if (c == 0) return fail(Code::internal, "division by zero");
  auto q = div_round(static_cast<i128>(a) * static_cast<i128>(b), c, mode);
  if (!q) return q.error();
  return narrow(*q);
}

Result<std::int64_t> checked_add(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return out_of_range();
  return r;
}
Result<std::int64_t> checked_sub(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return out_of_range();
  return r;
}
Result<std::int64_t> checked_mul(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return out_of_range();
  return r;
}

}  // namespace hydrox::decimal
