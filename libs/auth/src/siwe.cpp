#include "hydrox/auth/siwe.hpp"

#include <cryptopp/keccak.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <array>
#include <cstring>
#include <ctime>

#include "hydrox/core/clock.hpp"

namespace hydrox::auth {

namespace {

Error malformed(std::string what) { return fail(Code::invalid_field, "malformed sign-in message: " + what, "message"); }

std::array<unsigned char, 32> keccak(const unsigned char* data, std::size_t n) {
  CryptoPP::Keccak_256 k;
  k.Update(data, n);
  std::array<unsigned char, 32> out{};
  k.Final(out.data());
  return out;
}

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s.push_back(kHex[p[i] >> 4]);
    s.push_back(kHex[p[i] & 15]);
  }
  return s;
}

bool unhex(std::string_view h, unsigned char* out, std::size_t n) {
  if (h.starts_with("0x") || h.starts_with("0X")) h.remove_prefix(2);
  if (h.size() != n * 2) return false;
  auto v = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < n; ++i) {
    int a = v(h[2 * i]), b = v(h[2 * i + 1]);
    if (a < 0 || b < 0) return false;
    out[i] = static_cast<unsigned char>(a * 16 + b);
  }
  return true;
}

const secp256k1_context* context() {
  static const secp256k1_context* ctx = secp256k1_context_create(SECP256K1_CONTEXT_VERIFY);
  return ctx;
}

// secp256k1 group order n / 2: s above it is the malleable twin of a valid signature.
constexpr std::array<unsigned char, 32> kHalfOrder{
    0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0x5D, 0x57, 0x6E, 0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0};

}  // namespace

std::string keccak256_hex(std::string_view data) {
  auto d = keccak(reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return hex(d.data(), d.size());
}

std::optional<std::int64_t> parse_rfc3339_ms(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)
  if (t.size() < 20) return std::nullopt;
  auto num = [&](std::size_t pos, std::size_t len) -> int {
    int v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (t[i] < '0' || t[i] > '9') return -1;
      v = v * 10 + (t[i] - '0');
    }
    return v;
  };
  if (t[4] != '-' || t[7] != '-' || (t[10] != 'T' && t[10] != 't') || t[13] != ':' || t[16] != ':') return std::nullopt;
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(5, 2) - 1;
  tm.tm_mday = num(8, 2);
  tm.tm_hour = num(11, 2);
  tm.tm_min = num(14, 2);
  tm.tm_sec = num(17, 2);
  if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mday < 1 || tm.tm_hour < 0 || tm.tm_min < 0 || tm.tm_sec < 0) return std::nullopt;
  std::size_t i = 19;
  std::int64_t ms = 0;
  if (i < t.size() && t[i] == '.') {
    ++i;
    int digits = 0;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
      if (digits < 3) ms = ms * 10 + (t[i] - '0');
      ++digits;
      ++i;
    }
    if (digits == 0) return std::nullopt;
    for (; digits < 3; ++digits) ms *= 10;
  }
  std::int64_t offset_s = 0;
  if (i < t.size() && (t[i] == 'Z' || t[i] == 'z')) {
    ++i;
  } else if (i + 6 == t.size() && (t[i] == '+' || t[i] == '-') && t[i + 3] == ':') {
    int hh = num(i + 1, 2), mm = num(i + 4, 2);
    if (hh < 0 || mm < 0) return std::nullopt;
    offset_s = (t[i] == '+' ? 1 : -1) * (hh * 3600 + mm * 60);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != t.size()) return std::nullopt;
  return (static_cast<std::int64_t>(timegm(&tm)) - offset_s) * 1000 + ms;
}

Result<SiweMessage> parse_siwe(std::string_view text) {
  if (text.size() > 8192) return malformed("too long");
  SiweMessage m;
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  constexpr std::string_view kEth = " wants you to sign in with your Ethereum account:";
  constexpr std::string_view kAda = " wants you to sign in with your Cardano account:";
  if (lines.size() < 8) return malformed("first line");
  std::string_view suffix;
  if (lines[0].ends_with(kEth)) {
    suffix = kEth;
  } else if (lines[0].ends_with(kAda)) {
    suffix = kAda;
    m.account = "Cardano";
  } else {
    return malformed("first line");
  }
  m.domain = std::string(lines[0].substr(0, lines[0].size() - suffix.size()));
  m.address = std::string(lines[1]);
  if (m.account == "Ethereum" && (m.address.size() != 42 || !m.address.starts_with("0x"))) return malformed("address");
  if (m.account == "Cardano" && (m.address.size() < 20 || m.address.size() > 200)) return malformed("address");
  std::size_t i = 2;
  if (!lines[i].empty()) return malformed("blank line after the address");
  ++i;
  if (i < lines.size() && !lines[i].empty() && lines[i].find(": ") == std::string_view::npos) {
    m.statement = std::string(lines[i++]);
    if (i < lines.size() && lines[i].empty()) ++i;
  } else if (i < lines.size() && lines[i].empty()) {
    ++i;
  }
  bool have_uri = false, have_version = false, have_chain = false, have_nonce = false, have_issued = false;
  for (; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.empty() && i + 1 == lines.size()) break;  // a trailing newline
    auto colon = line.find(": ");
    if (colon == std::string_view::npos) {
      if (line == "Resources:" || line.starts_with("- ")) continue;
      return malformed("line \"" + std::string(line.substr(0, 40)) + "\"");
    }
    std::string_view key = line.substr(0, colon), value = line.substr(colon + 2);
    if (key == "URI") { m.uri = std::string(value); have_uri = true; }
    else if (key == "Version") { m.version = std::string(value); have_version = true; }
    else if (key == "Chain ID") {
      std::int64_t v = 0;
      for (char c : value) {
        if (c < '0' || c > '9' || v > 1'000'000'000'000LL) return malformed("chain id");
        v = v * 10 + (c - '0');
      }
      m.chain_id = v;
      have_chain = !value.empty();
    } else if (key == "Nonce") { m.nonce = std::string(value); have_nonce = m.nonce.size() >= 8; }
    else if (key == "Issued At") {
      auto t = parse_rfc3339_ms(value);
      if (!t) return malformed("issued at");
      m.issued_at_ms = *t;
      have_issued = true;
    } else if (key == "Expiration Time") {
      auto t = parse_rfc3339_ms(value);
      if (!t) return malformed("expiration time");
      m.expiration_ms = *t;
    } else if (key == "Not Before") {
      auto t = parse_rfc3339_ms(value);
      if (!t) return malformed("not before");
      m.not_before_ms = *t;
    } else if (key == "Request ID") {
      continue;
    } else {
      return malformed("unknown field " + std::string(key));
    }
  }
  if (!have_uri || !have_version || !have_chain || !have_nonce || !have_issued) return malformed("missing a required field");
  if (m.version != "1") return malformed("version");
  return m;
}

std::string format_siwe(const SiweMessage& m) {
  std::string s = m.domain + " wants you to sign in with your " + m.account + " account:\n" + m.address + "\n\n";
  if (!m.statement.empty()) s += m.statement + "\n\n";
  s += "URI: " + m.uri + "\nVersion: " + m.version + "\nChain ID: " + std::to_string(m.chain_id) +
       "\nNonce: " + m.nonce + "\nIssued At: " + format_rfc3339_ms(m.issued_at_ms);
  if (m.expiration_ms) s += "\nExpiration Time: " + format_rfc3339_ms(*m.expiration_ms);
  if (m.not_before_ms) s += "\nNot Before: " + format_rfc3339_ms(*m.not_before_ms);
  return s;
}

Result<std::string> recover_eth_address(std::string_view message, std::string_view signature_hex) {
  unsigned char sig[65];
  if (!unhex(signature_hex, sig, sizeof sig)) return fail(Code::invalid_field, "signature must be 65 bytes of hex", "signature");
  int v = sig[64];
  if (v >= 27) v -= 27;
  if (v != 0 && v != 1) return fail(Code::unauthenticated, "bad signature");
  if (std::memcmp(sig + 32, kHalfOrder.data(), 32) > 0) return fail(Code::unauthenticated, "bad signature (high s)");
  const std::string prefixed = "\x19" "Ethereum Signed Message:\n" + std::to_string(message.size()) + std::string(message);
  auto digest = keccak(reinterpret_cast<const unsigned char*>(prefixed.data()), prefixed.size());
  secp256k1_ecdsa_recoverable_signature rsig;
  secp256k1_pubkey pub;
  if (!secp256k1_ecdsa_recoverable_signature_parse_compact(context(), &rsig, sig, v) ||
      !secp256k1_ecdsa_recover(context(), &pub, &rsig, digest.data())) {
    return fail(Code::unauthenticated, "bad signature");
  }
  unsigned char out[65];
  std::size_t len = sizeof out;
  secp256k1_ec_pubkey_serialize(context(), out, &len, &pub, SECP256K1_EC_UNCOMPRESSED);
  auto h = keccak(out + 1, 64);
  return "0x" + hex(h.data() + 12, 20);
}

}  // namespace hydrox::auth
