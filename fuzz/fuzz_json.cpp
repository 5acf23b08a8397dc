// JSON documents (every request body): parse under the default limits; what parses dumps to text
// that parses to the same dump (numbers keep their exact literal).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hydrox/json/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto v = hydrox::json::parse(text);
  if (!v) return 0;
  const std::string once = hydrox::json::dump(*v);
  auto again = hydrox::json::parse(once);
  if (!again || hydrox::json::dump(*again) != once) __builtin_trap();
  if (v->is_object()) (void)hydrox::json::parse_object(text, {"symbol", "side", "amount"});
  for (const auto* key : {"price", "amount", "limit"}) {
    if (const auto* f = v->find(key)) {
      (void)f->as_decimal();
      (void)f->as_int(INT64_MIN, INT64_MAX);
    }
  }
  return 0;
}
