#pragma once
// Cardano wallet sign-in (CIP-30 signData): bech32 Shelley addresses, COSE_Sign1 / COSE_Key
// (CBOR, RFC 8152) with Ed25519, and BLAKE2b-224 key hashes.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hydrox/core/error.hpp"

namespace hydrox::auth {

using KeyHash = std::array<unsigned char, 28>;

struct CardanoAddress {
  int network = 0;  // 0 test-nets, 1 mainnet
  std::optional<KeyHash> payment_key;  // when the payment part is a key hash
  std::optional<KeyHash> stake_key;    // when the delegation (or reward) part is a key hash
  std::vector<unsigned char> raw;      // the address bytes
};

// addr1… / addr_test1… (base, enterprise; key or script hashes) and stake1… / stake_test1…
// (reward). Checksum, prefix/network agreement and layout are checked.
Result<CardanoAddress> parse_cardano_address(std::string_view bech32);

struct Cip30Signature {
  std::string payload;                    // what was signed (the message, or its BLAKE2b-224 if hashed)
  bool hashed = false;
  std::array<unsigned char, 32> public_key{};
  std::optional<std::vector<unsigned char>> address;  // the protected "address" header
};

// Verifies a CIP-30 signData result: COSE_Sign1 (hex; EdDSA in the protected header) whose
// Ed25519 signature over Sig_structure verifies with the COSE_Key's (hex; OKP, Ed25519) public key.
// Any structural problem or a failing signature is an error (Code::unauthenticated).
Result<Cip30Signature> verify_cip30(std::string_view cose_sign1_hex, std::string_view cose_key_hex);

KeyHash blake2b_224(const unsigned char* data, std::size_t n);

}  // namespace hydrox::auth
