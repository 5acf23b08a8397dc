#include "hydrox/auth/cardano.hpp"

#include <cbor.h>
#include <sodium.h>

#include <cstring>
#include <memory>

namespace hydrox::auth {

namespace {

constexpr std::size_t kMaxHex = 16 * 1024;

Error bad(std::string what) { return fail(Code::unauthenticated, "bad CIP-30 signature: " + what, "signature"); }

std::optional<std::vector<unsigned char>> unhex(std::string_view h) {
  if (h.empty() || h.size() % 2 != 0 || h.size() > kMaxHex) return std::nullopt;  // (empty: fuzz_cardano)
  std::vector<unsigned char> out(h.size() / 2);
  std::size_t len = 0;
  if (sodium_hex2bin(out.data(), out.size(), h.data(), h.size(), nullptr, &len, nullptr) != 0 || len != out.size()) {
    return std::nullopt;
  }
  return out;
}

// ---- bech32 (BIP-173; Cardano addresses are longer than 90 characters, so no length cap below 1,000)
constexpr std::string_view kCharset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

std::uint32_t polymod(const std::vector<std::uint8_t>& v) {
  static constexpr std::uint32_t kGen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
  std::uint32_t chk = 1;
  for (std::uint8_t x : v) {
    const std::uint32_t top = chk >> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ x;
    for (int i = 0; i < 5; ++i) {
      if ((top >> i) & 1) chk ^= kGen[i];
    }
  }
  return chk;
}

Result<std::pair<std::string, std::vector<unsigned char>>> bech32_decode(std::string_view s) {
  if (s.size() < 8 || s.size() > 1000) return fail(Code::invalid_field, "not a bech32 address", "wallet_address");
  bool lower = false, upper = false;
  for (char c : s) {
    if (c < 33 || c > 126) return fail(Code::invalid_field, "not a bech32 address", "wallet_address");
    lower |= (c >= 'a' && c <= 'z');
    upper |= (c >= 'A' && c <= 'Z');
  }
  if (lower && upper) return fail(Code::invalid_field, "mixed case address", "wallet_address");
  std::string t(s);
  for (auto& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto sep = t.rfind('1');
  if (sep == std::string::npos || sep == 0 || sep + 7 > t.size()) return fail(Code::invalid_field, "not a bech32 address", "wallet_address");
  const std::string hrp = t.substr(0, sep);
  std::vector<std::uint8_t> values;
  for (char c : hrp) values.push_back(static_cast<std::uint8_t>(c >> 5));
  values.push_back(0);
  for (char c : hrp) values.push_back(static_cast<std::uint8_t>(c & 31));
  std::vector<std::uint8_t> data;
  for (std::size_t i = sep + 1; i < t.size(); ++i) {
    const auto p = kCharset.find(t[i]);
    if (p == std::string_view::npos) return fail(Code::invalid_field, "not a bech32 address", "wallet_address");
    data.push_back(static_cast<std::uint8_t>(p));
  }
  values.insert(values.end(), data.begin(), data.end());
  if (polymod(values) != 1) return fail(Code::invalid_field, "the address checksum does not match", "wallet_address");
  data.resize(data.size() - 6);
  // 5-bit groups to bytes; leftover bits must be zero padding.
  std::vector<unsigned char> bytes;
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::uint8_t v : data) {
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<unsigned char>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0) return fail(Code::invalid_field, "bad address padding", "wallet_address");
  return std::make_pair(hrp, bytes);
}

// ---- CBOR
struct CborDeleter {
  void operator()(cbor_item_t* p) const {
    if (p) cbor_decref(&p);
  }
};
using CborPtr = std::unique_ptr<cbor_item_t, CborDeleter>;

// libcbor allocates what a header declares (an array of 2^32 items from 9 bytes of input): walk
// the item first and refuse declared sizes the input cannot hold, indefinite lengths, and deep
// nesting. Found by fuzz/fuzz_cardano.
bool plausible(const unsigned char*& p, const unsigned char* end, int depth) {
  if (p >= end || depth > 16) return false;
  const unsigned major = *p >> 5, info = *p & 31;
  ++p;
  std::uint64_t arg = info;
  if (info >= 24 && info <= 27) {
    const int len = 1 << (info - 24);
    if (end - p < len) return false;
    arg = 0;
    for (int i = 0; i < len; ++i) arg = (arg << 8) | *p++;
  } else if (info > 27) {
    return false;  // reserved values and indefinite lengths: not in a CIP-30 signature
  }
  const auto remaining = static_cast<std::uint64_t>(end - p);
  switch (major) {
    case 0: case 1: case 7: return true;
    case 2: case 3:
      if (arg > remaining) return false;
      p += arg;
      return true;
    case 4: case 5: {
      const std::uint64_t items = major == 5 ? arg * 2 : arg;
      if (arg > remaining || items > remaining) return false;
      for (std::uint64_t i = 0; i < items; ++i) {
        if (!plausible(p, end, depth + 1)) return false;
      }
      return true;
    }
    case 6: return plausible(p, end, depth + 1);
  }
  return false;
}

CborPtr load(const std::vector<unsigned char>& bytes) {
  const unsigned char* p = bytes.data();
  if (!plausible(p, bytes.data() + bytes.size(), 0) || p != bytes.data() + bytes.size()) return nullptr;
  cbor_load_result res{};
  cbor_item_t* item = cbor_load(bytes.data(), bytes.size(), &res);
  if (res.error.code != CBOR_ERR_NONE || res.read != bytes.size()) {
    if (item) cbor_decref(&item);
    return nullptr;
  }
  return CborPtr(item);
}

std::optional<std::int64_t> int_of(cbor_item_t* i) {
  if (cbor_isa_uint(i)) return static_cast<std::int64_t>(cbor_get_int(i));
  if (cbor_isa_negint(i)) return -1 - static_cast<std::int64_t>(cbor_get_int(i));
  return std::nullopt;
}

std::optional<std::vector<unsigned char>> bytes_of(cbor_item_t* i) {
  if (!cbor_isa_bytestring(i) || !cbor_bytestring_is_definite(i)) return std::nullopt;
  const unsigned char* p = cbor_bytestring_handle(i);
  return std::vector<unsigned char>(p, p + cbor_bytestring_length(i));
}

// A map value by integer or text label.
cbor_item_t* lookup(cbor_item_t* map, std::optional<std::int64_t> int_label, std::string_view text_label = {}) {
  if (!cbor_isa_map(map) || !cbor_map_is_definite(map)) return nullptr;
  cbor_pair* pairs = cbor_map_handle(map);
  for (std::size_t i = 0; i < cbor_map_size(map); ++i) {
    cbor_item_t* k = pairs[i].key;
    if (int_label) {
      if (auto v = int_of(k); v && *v == *int_label) return pairs[i].value;
    } else if (cbor_isa_string(k) && cbor_string_is_definite(k) && cbor_string_length(k) == text_label.size() &&
               std::memcmp(cbor_string_handle(k), text_label.data(), text_label.size()) == 0) {
      return pairs[i].value;
    }
  }
  return nullptr;
}

void put_bstr(std::vector<unsigned char>& out, const unsigned char* p, std::size_t n) {
  if (n < 24) {
    out.push_back(static_cast<unsigned char>(0x40 | n));
  } else if (n < 256) {
    out.push_back(0x58);
    out.push_back(static_cast<unsigned char>(n));
  } else if (n < 65536) {
    out.push_back(0x59);
    out.push_back(static_cast<unsigned char>(n >> 8));
    out.push_back(static_cast<unsigned char>(n & 0xff));
  } else {
    out.push_back(0x5a);
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<unsigned char>((n >> s) & 0xff));
  }
  out.insert(out.end(), p, p + n);
}

}  // namespace

KeyHash blake2b_224(const unsigned char* data, std::size_t n) {
  KeyHash h{};
  crypto_generichash(h.data(), h.size(), data, n, nullptr, 0);
  return h;
}

Result<CardanoAddress> parse_cardano_address(std::string_view text) {
  auto decoded = bech32_decode(text);
  if (!decoded) return decoded.error();
  const std::string& hrp = decoded->first;
  const std::vector<unsigned char>& bytes = decoded->second;
  if (bytes.empty()) return fail(Code::invalid_field, "empty address", "wallet_address");
  CardanoAddress a;
  a.raw = bytes;
  const int type = bytes[0] >> 4;
  a.network = bytes[0] & 0x0f;
  const bool mainnet_hrp = hrp == "addr" || hrp == "stake";
  const bool test_hrp = hrp == "addr_test" || hrp == "stake_test";
  const bool reward = type == 14 || type == 15;
  if (!mainnet_hrp && !test_hrp) return fail(Code::invalid_field, "not a Cardano address (addr, addr_test, stake, stake_test)", "wallet_address");
  if (reward != hrp.starts_with("stake")) return fail(Code::invalid_field, "the prefix does not match the address type", "wallet_address");
  if ((a.network == 1) != mainnet_hrp || a.network > 1) {
    return fail(Code::invalid_field, "the prefix does not match the address network", "wallet_address");
  }
  auto hash_at = [&](std::size_t off) {
    KeyHash h{};
    std::memcpy(h.data(), bytes.data() + off, 28);
    return h;
  };
  if (type <= 3) {  // base: payment + stake credentials
    if (bytes.size() != 57) return fail(Code::invalid_field, "a base address has 57 bytes", "wallet_address");
    if ((type & 1) == 0) a.payment_key = hash_at(1);
    if ((type & 2) == 0) a.stake_key = hash_at(29);
  } else if (type == 6 || type == 7) {  // enterprise
    if (bytes.size() != 29) return fail(Code::invalid_field, "an enterprise address has 29 bytes", "wallet_address");
    if (type == 6) a.payment_key = hash_at(1);
  } else if (reward) {
    if (bytes.size() != 29) return fail(Code::invalid_field, "a reward address has 29 bytes", "wallet_address");
    if (type == 14) a.stake_key = hash_at(1);
  } else {
    return fail(Code::invalid_field, "unsupported address type (pointer or Byron)", "wallet_address");
  }
  return a;
}

Result<Cip30Signature> verify_cip30(std::string_view sign1_hex, std::string_view key_hex) {
  auto sign1_bytes = unhex(sign1_hex);
  auto key_bytes = unhex(key_hex);
  if (!sign1_bytes) return bad("signature must be hex CBOR");
  if (!key_bytes) return bad("key must be hex CBOR");
  CborPtr sign1 = load(*sign1_bytes);
  CborPtr key = load(*key_bytes);
  if (!sign1 || !key) return bad("not CBOR");
  cbor_item_t* arr = sign1.get();
  if (cbor_isa_tag(arr)) {  // COSE_Sign1 tag 18 is optional
    if (cbor_tag_value(arr) != 18) return bad("wrong tag");
    arr = cbor_tag_item(arr);
    cbor_decref(&arr);  // cbor_tag_item adds a reference; sign1 keeps the tree alive
  }
  if (!cbor_isa_array(arr) || !cbor_array_is_definite(arr) || cbor_array_size(arr) != 4) return bad("not a COSE_Sign1");
  cbor_item_t** items = cbor_array_handle(arr);
  auto protected_raw = bytes_of(items[0]);
  auto payload = bytes_of(items[2]);
  auto signature = bytes_of(items[3]);
  if (!protected_raw || !payload || !signature || signature->size() != 64 || !cbor_isa_map(items[1])) {
    return bad("COSE_Sign1 fields");
  }
  CborPtr prot = load(*protected_raw);
  if (!prot || !cbor_isa_map(prot.get())) return bad("protected header");
  cbor_item_t* alg = lookup(prot.get(), 1);
  if (!alg || int_of(alg) != -8) return bad("the algorithm must be EdDSA");
  Cip30Signature out;
  if (cbor_item_t* addr = lookup(prot.get(), std::nullopt, "address")) {
    auto a = bytes_of(addr);
    if (!a) return bad("address header");
    out.address = *a;
  }
  if (cbor_item_t* hashed = lookup(items[1], std::nullopt, "hashed")) {
    if (!cbor_isa_float_ctrl(hashed) || !cbor_is_bool(hashed)) return bad("hashed header");
    out.hashed = cbor_get_bool(hashed);
  }
  // COSE_Key: kty OKP (1), crv Ed25519 (6), x = 32 bytes; alg, when present, EdDSA.
  cbor_item_t* kty = lookup(key.get(), 1);
  cbor_item_t* crv = lookup(key.get(), -1);
  cbor_item_t* x = lookup(key.get(), -2);
  cbor_item_t* kalg = lookup(key.get(), 3);
  auto xb = x ? bytes_of(x) : std::nullopt;
  if (!kty || int_of(kty) != 1 || !crv || int_of(crv) != 6 || !xb || xb->size() != 32 || (kalg && int_of(kalg) != -8)) {
    return bad("the key must be an Ed25519 COSE_Key");
  }
  std::memcpy(out.public_key.data(), xb->data(), 32);
  // Sig_structure = ["Signature1", protected, external_aad = h'', payload]
  std::vector<unsigned char> to_sign{0x84, 0x6a};
  for (char c : std::string_view("Signature1")) to_sign.push_back(static_cast<unsigned char>(c));
  put_bstr(to_sign, protected_raw->data(), protected_raw->size());
  to_sign.push_back(0x40);
  put_bstr(to_sign, payload->data(), payload->size());
  if (crypto_sign_verify_detached(signature->data(), to_sign.data(), to_sign.size(), out.public_key.data()) != 0) {
    return bad("the signature does not verify");
  }
  out.payload.assign(payload->begin(), payload->end());
  return out;
}

}  // namespace hydrox::auth
