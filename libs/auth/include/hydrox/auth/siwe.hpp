#pragma once
// Sign-In with Ethereum (EIP-4361) messages and EIP-191 personal_sign signatures.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "hydrox/core/error.hpp"

namespace hydrox::auth {

struct SiweMessage {
  std::string account = "Ethereum";  // "Ethereum", or "Cardano" (the same format for CIP-30 wallets)
  std::string domain;
  std::string address;  // as written (EIP-55 checksummed by wallets)
  std::string statement;
  std::string uri;
  std::string version;
  std::int64_t chain_id = 0;
  std::string nonce;
  std::int64_t issued_at_ms = 0;
  std::optional<std::int64_t> expiration_ms;
  std::optional<std::int64_t> not_before_ms;
};

// Parses the EIP-4361 text ("... sign in with your Ethereum account:", or "Cardano account:" with a
// bech32 address and the network id as Chain ID: 0 test-nets, 1 mainnet); MALFORMED_MESSAGE-style errors (Code::invalid_field, field "message").
Result<SiweMessage> parse_siwe(std::string_view text);

// The text a wallet signs for these fields (what GET /auth/nonce hands out).
std::string format_siwe(const SiweMessage& m);

// RFC 3339 (…Z or ±hh:mm, optional fraction) to Unix milliseconds.
std::optional<std::int64_t> parse_rfc3339_ms(std::string_view text);

// The address ("0x" + 40 lower-case hex) that made `signature` (65 bytes hex, v = 0/1/27/28)
// over `message` with EIP-191 personal_sign. High-s signatures are refused (malleable).
Result<std::string> recover_eth_address(std::string_view message, std::string_view signature_hex);

// keccak256 (the Ethereum variant), lower-case hex.
std::string keccak256_hex(std::string_view data);

}  // namespace hydrox::auth
