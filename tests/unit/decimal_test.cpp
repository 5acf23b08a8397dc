#include <gtest/gtest.h>

#include <limits>

#include "hydrox/decimal/decimal.hpp"

using namespace hydrox;
using namespace hydrox::decimal;

namespace {
std::int64_t units(std::string_view text, int scale, Rounding mode = Rounding::exact) {
  auto r = parse_units(text, scale, mode);
  EXPECT_TRUE(r) << text << ": " << (r ? "" : r.error().message);
  return r ? *r : 0;
}
Code error_of(std::string_view text, int scale, Rounding mode = Rounding::exact) {
  auto r = parse_units(text, scale, mode);
  EXPECT_FALSE(r) << text;
  return r ? Code::internal : r.error().code;
}
}  // namespace

TEST(DecimalParse, ExactValuesWithoutBinaryFloatingPoint) {
  EXPECT_EQ(units("97250.50", 1), 972505);
  EXPECT_EQ(units("97250.5", 2), 9725050);
  EXPECT_EQ(units("0.1", 6), 100000);
  EXPECT_EQ(units("0.000001", 6), 1);
  EXPECT_EQ(units("1e-6", 6), 1);
  EXPECT_EQ(units("1E-18", 18), 1);
  EXPECT_EQ(units("0.000000000000000001", 18), 1);
  EXPECT_EQ(units("0.450000000000000001", 18), 450000000000000001);
  EXPECT_EQ(units("-12.5", 1), -125);
  EXPECT_EQ(units("1.5e3", 0), 1500);
  EXPECT_EQ(units("007", 0), 7);
  EXPECT_EQ(units("-0", 0), 0);
  EXPECT_EQ(units("0.30000000000000004", 17), 30000000000000004);
}

TEST(DecimalParse, NormalizesTrailingZeros) {
  auto d = parse("97250.5000");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->scale, 1);
  EXPECT_EQ(static_cast<long long>(d->mantissa), 972505);
  auto big = parse("12e3");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->scale, 0);
  EXPECT_EQ(static_cast<long long>(big->mantissa), 12000);
}

TEST(DecimalParse, RefusesWhatIsNotADecimalLiteral) {
  for (std::string_view bad : {"", "-", "+1", "1.", ".5", "1e", "1e+", "0x10", "NaN", "nan", "inf",
                               "Infinity", "-Infinity", " 1", "1 ", "1,5", "1.2.3", "--1", "1e5.5",
                               "١"}) {
    auto r = parse(bad);
    EXPECT_FALSE(r) << "accepted '" << bad << "'";
    if (!r) {
      EXPECT_EQ(r.error().code, Code::invalid_field) << bad;
    }
  }
}

TEST(DecimalParse, RefusesValuesBeyondRange) {
  EXPECT_EQ(parse("1e400").error().code, Code::number_out_of_range);
  EXPECT_EQ(parse("1e-400").error().code, Code::number_out_of_range);
  EXPECT_EQ(parse("1e99999999999999999999").error().code, Code::number_out_of_range);
  EXPECT_EQ(parse("123456789012345678901234567890123456789").error().code,
            Code::number_out_of_range);  // 39 significant digits
  EXPECT_TRUE(parse("12345678901234567890123456789012345678"));  // 38 digits
  EXPECT_TRUE(parse("0.00000000000000000000000000000000000001"));  // scale 38
  EXPECT_EQ(parse("0.000000000000000000000000000000000000001").error().code,
            Code::number_out_of_range);
  // Exponent forms obey the same 38-digit bound as plain text (so format → parse round-trips).
  EXPECT_TRUE(parse("9e37"));
  EXPECT_FALSE(parse("1e38"));
  EXPECT_FALSE(parse("12347e34"));
  EXPECT_FALSE(parse("2e38"));
}

TEST(DecimalUnits, OverflowOfInt64IsAnError) {
  EXPECT_EQ(units("9223372036854775807", 0), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(units("-9223372036854775808", 0), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(error_of("9223372036854775808", 0), Code::number_out_of_range);
  EXPECT_EQ(error_of("10000000000000", 6), Code::number_out_of_range);
  EXPECT_EQ(error_of("1e30", 0), Code::number_out_of_range);
}

TEST(DecimalUnits, ExactRefusesExtraDecimals) {
  EXPECT_EQ(error_of("0.0000001", 6), Code::too_many_decimals);
  EXPECT_EQ(error_of("97250.55", 1), Code::too_many_decimals);
  EXPECT_EQ(units("97250.50", 1), 972505);  // a trailing zero is not an extra decimal
}

TEST(DecimalRounding, EveryModeOnPositiveNegativeAndTies) {
  struct Case {
    const char* text;
    Rounding mode;
    std::int64_t want;
  };
  const Case cases[] = {
      {"1.25", Rounding::down, 12},          {"-1.25", Rounding::down, -13},
      {"1.25", Rounding::up, 13},            {"-1.25", Rounding::up, -12},
      {"1.25", Rounding::toward_zero, 12},   {"-1.25", Rounding::toward_zero, -12},
      {"1.21", Rounding::away_from_zero, 13}, {"-1.21", Rounding::away_from_zero, -13},
      {"1.25", Rounding::half_up, 13},       {"-1.25", Rounding::half_up, -13},
      {"1.24", Rounding::half_up, 12},       {"1.25", Rounding::half_even, 12},
      {"1.35", Rounding::half_even, 14},     {"-1.25", Rounding::half_even, -12},
      {"-1.35", Rounding::half_even, -14},   {"1.26", Rounding::half_even, 13},
      {"1.20", Rounding::down, 12},          {"1.20", Rounding::up, 12},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(units(c.text, 1, c.mode), c.want) << c.text << " mode " << static_cast<int>(c.mode);
  }
}

TEST(DecimalFormat, PlainLiteralsTrimmed) {
  EXPECT_EQ(format(std::int64_t{972505}, 1), "97250.5");
  EXPECT_EQ(format(std::int64_t{9725050}, 2), "97250.5");
  EXPECT_EQ(format(std::int64_t{1}, 6), "0.000001");
  EXPECT_EQ(format(std::int64_t{-1}, 6), "-0.000001");
  EXPECT_EQ(format(std::int64_t{0}, 6), "0");
  EXPECT_EQ(format(std::int64_t{100000000}, 6), "100");
  EXPECT_EQ(format(std::int64_t{1}, 18), "0.000000000000000001");
  EXPECT_EQ(format(std::numeric_limits<std::int64_t>::min(), 0), "-9223372036854775808");
  EXPECT_EQ(format(std::numeric_limits<std::int64_t>::max(), 6), "9223372036854.775807");
  i128 huge = pow10(38) - 1;
  EXPECT_EQ(format(huge, 0), "99999999999999999999999999999999999999");
  EXPECT_EQ(format(-huge, 38), "-0.99999999999999999999999999999999999999");
}

TEST(DecimalFormat, RoundTripsThroughParse) {
  for (const char* text : {"0.1", "97250.5", "0.000001", "-3.14159", "123456789012.123456",
                           "0.000000000000000001", "99999999999999999999999999999999999999"}) {
    auto d = parse(text);
    ASSERT_TRUE(d) << text;
    EXPECT_EQ(format(*d), text);
  }
}

TEST(DecimalArithmetic, MulDivUses128BitsAndRoundsAsAsked) {
  // notional of 0.5 BTC (lots of 0.001) at 97000.0 (ticks of 0.1) in micro-USDM:
  // price_ticks * 100000 (µUSDM per tick) * lots / 1000 (lots per BTC)
  auto n = mul_div(970000 * 100000LL, 500, 1000, Rounding::exact);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 48'500'000'000);  // 48,500 USDM
  // (2^62 * 4) / 8 overflows 64 bits in the middle but not at the end.
  auto big = mul_div(std::int64_t{1} << 62, 4, 8, Rounding::exact);
  ASSERT_TRUE(big);
  EXPECT_EQ(*big, std::int64_t{1} << 61);
  EXPECT_EQ(*mul_div(10, 1, 3, Rounding::down), 3);
  EXPECT_EQ(*mul_div(10, 1, 3, Rounding::up), 4);
  EXPECT_EQ(*mul_div(-10, 1, 3, Rounding::down), -4);
  EXPECT_EQ(*mul_div(-10, 1, 3, Rounding::up), -3);
  EXPECT_EQ(*mul_div(10, 1, -3, Rounding::down), -4);
  EXPECT_FALSE(mul_div(10, 1, 3, Rounding::exact));
  EXPECT_FALSE(mul_div(1, 1, 0, Rounding::down));
  EXPECT_EQ(mul_div(std::int64_t{1} << 62, 4, 1, Rounding::exact).error().code,
            Code::number_out_of_range);
}

TEST(DecimalArithmetic, CheckedOpsDetectOverflow) {
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  EXPECT_FALSE(checked_add(kMax, 1));
  EXPECT_FALSE(checked_sub(kMin, 1));
  EXPECT_FALSE(checked_mul(kMax / 2 + 1, 2));
  EXPECT_EQ(*checked_add(kMax - 1, 1), kMax);
  EXPECT_FALSE(narrow(static_cast<i128>(kMax) + 1));
}

TEST(Fixed, UsdmParsesExactlyAndRenders) {
  auto a = Usdm::parse("10000");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->units(), 10'000'000'000);
  EXPECT_EQ(a->to_string(), "10000");
  EXPECT_FALSE(Usdm::parse("0.0000001"));
  EXPECT_EQ(Usdm::parse("0.0000019", Rounding::down)->units(), 1);
  EXPECT_EQ(Usdm::parse("0.0000011", Rounding::up)->units(), 2);
  EXPECT_LT(*Usdm::parse("1.5"), *Usdm::parse("1.500001"));
}
