// EIP-4361 sign-in messages (Ethereum and the Cardano variant) and signatures: what parses
// formats back to text that parses to the same fields; signature recovery never crashes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "hydrox/auth/siwe.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)hydrox::auth::parse_rfc3339_ms(text);
  (void)hydrox::auth::recover_eth_address("message", text);
  auto m = hydrox::auth::parse_siwe(text);
  if (!m) return 0;
  auto again = hydrox::auth::parse_siwe(hydrox::auth::format_siwe(*m));
  if (!again) __builtin_trap();
  if (again->address != m->address || again->nonce != m->nonce || again->chain_id != m->chain_id ||
      again->domain != m->domain || again->account != m->account) {
    __builtin_trap();
  }
  return 0;
}
