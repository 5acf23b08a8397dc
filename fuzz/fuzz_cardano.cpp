// Cardano sign-in input: bech32 addresses, and CIP-30 COSE_Sign1 / COSE_Key CBOR. The first byte
// picks what the rest is: an address, a COSE_Sign1 (with a valid key), or a COSE_Key (with a valid
// COSE_Sign1). A forged structure must never verify.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <sodium.h>

#include "hydrox/auth/cardano.hpp"

namespace {
// A genuine signData result over "hello world" (tests/integration/cardano_sign.mjs).
const std::string kSign1 =
    "845846a2012767616464726573735839015ae193abe694a607531e20f85d8358ade9a474a4f45ac4e15e962da1e8a8dd8db193fb3f0c2c"
    "1df5cb94620cd86be43e4e05539fc678b1b5a166686173686564f44b68656c6c6f20776f726c64584089f85937791275bbd2614b18ba5a"
    "fd4acc699408dccf6b48fe47c4c1a0afc069b91d16b4198d39dbca96853a1f6ef84f306b60049e5f8245995bcd7e8d9b2806";
const std::string kKey = "a4010103272006215820d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737";

std::string hex(const std::uint8_t* p, std::size_t n) {
  std::string s(n * 2 + 1, '\0');
  sodium_bin2hex(s.data(), s.size(), p, n);
  s.pop_back();
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0] % 3;
  const std::uint8_t* rest = data + 1;
  const std::size_t n = size - 1;
  if (mode == 0) {
    auto a = hydrox::auth::parse_cardano_address(std::string_view(reinterpret_cast<const char*>(rest), n));
    if (a && a->network > 1) __builtin_trap();
    return 0;
  }
  const std::string h = hex(rest, n);
  auto v = mode == 1 ? hydrox::auth::verify_cip30(h, kKey) : hydrox::auth::verify_cip30(kSign1, h);
  // Only the genuine pair verifies; any accepted forgery with another payload is a bug.
  if (v && v->payload != "hello world") __builtin_trap();
  return 0;
}
