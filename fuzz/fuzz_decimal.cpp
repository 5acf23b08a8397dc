// Decimal text (every price, amount and rate a client sends): parse, convert at every rounding,
// format, and parse again; a round trip that changes the value is a bug (trap).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hydrox/decimal/decimal.hpp"

using namespace hydrox::decimal;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto d = parse(text);
  if (!d) return 0;
  for (Rounding r : {Rounding::exact, Rounding::down, Rounding::up, Rounding::half_even}) {
    for (int scale : {0, 1, 6, 8, 18}) {
      auto u = to_units(*d, scale, r);
      if (!u) continue;
      auto back = parse(format(*u, scale));
      if (!back) __builtin_trap();
      auto again = to_units(*back, scale, Rounding::exact);
      if (!again || *again != *u) __builtin_trap();
    }
  }
  auto f = parse(format(*d));
  if (!f) __builtin_trap();
  return 0;
}
