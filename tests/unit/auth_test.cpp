#include <gtest/gtest.h>

#include <cstring>

#include "hydrox/auth/cardano.hpp"
#include "hydrox/auth/siwe.hpp"
#include "hydrox/auth/tokens.hpp"

using namespace hydrox;

TEST(Keccak, KnownVectors) {
  EXPECT_EQ(auth::keccak256_hex(""), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  EXPECT_EQ(auth::keccak256_hex("abc"), "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
}

TEST(Rfc3339, ZuluOffsetsAndFractions) {
  EXPECT_EQ(*auth::parse_rfc3339_ms("1970-01-01T00:00:01Z"), 1000);
  EXPECT_EQ(*auth::parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), 1500);
  EXPECT_EQ(*auth::parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), 0);
  EXPECT_FALSE(auth::parse_rfc3339_ms("1970-01-01 00:00:00Z"));
  EXPECT_FALSE(auth::parse_rfc3339_ms("yesterday"));
}

TEST(Siwe, FormatThenParseRoundTrips) {
  auth::SiweMessage m;
  m.domain = "localhost:8080";
  m.address = "0x1caC279Ad3ea0bb0EC72beA5758Cc427a9575d56";
  m.statement = "Sign in to HydroX.";
  m.uri = "http://localhost:8080";
  m.version = "1";
  m.chain_id = 1;
  m.nonce = "abcdef0123456789";
  m.issued_at_ms = 1'795'000'000'000;
  m.expiration_ms = 1'795'000'300'000;
  auto back = auth::parse_siwe(auth::format_siwe(m));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->domain, m.domain);
  EXPECT_EQ(back->address, m.address);
  EXPECT_EQ(back->nonce, m.nonce);
  EXPECT_EQ(back->chain_id, 1);
  EXPECT_EQ(back->issued_at_ms, m.issued_at_ms);
  EXPECT_EQ(*back->expiration_ms, *m.expiration_ms);
  EXPECT_FALSE(auth::parse_siwe("hello"));
  EXPECT_FALSE(auth::parse_siwe(auth::format_siwe(m) + "\nBogus: 1"));
}

TEST(Siwe, MalformedSignaturesAreRefused) {
  EXPECT_FALSE(auth::recover_eth_address("x", "0x1234"));
  EXPECT_FALSE(auth::recover_eth_address("x", std::string(130, 'z')));
  std::string v_bad = std::string(128, '1') + "05";
  EXPECT_FALSE(auth::recover_eth_address("x", v_bad));
}

TEST(Tokens, RandomPrefixedAndHashed) {
  auto a = auth::new_token(auth::Kind::api_key);
  auto b = auth::new_token(auth::Kind::api_key);
  EXPECT_NE(a, b);
  EXPECT_TRUE(a.starts_with("hxk_"));
  EXPECT_TRUE(auth::new_token(auth::Kind::session).starts_with("hxs_"));
  EXPECT_EQ(auth::hash_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");  // SHA-256
  auto c = auth::decode(auth::encode({UserId{Uuid{1, 2}}, auth::Kind::api_key, auth::Scope::read, 0}));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->scope, auth::Scope::read);
  EXPECT_EQ(c->kind, auth::Kind::api_key);
}

// Addresses made by EMURGO's serialization library (tests/integration/cardano_sign.mjs) from the
// payment key 0x11…11 and the stake key 0x22…22.
constexpr std::string_view kBaseMainnet =
    "addr1q9dwryatu622vp6nrcs0shvrtzk7nfr55n69438pt6tzmg0g4rwcmvvnlvlsctqa7h9egcsvmp47g0jwq4fel3nckx6ss9yeyk";
constexpr std::string_view kBaseTestnet =
    "addr_test1qpdwryatu622vp6nrcs0shvrtzk7nfr55n69438pt6tzmg0g4rwcmvvnlvlsctqa7h9egcsvmp47g0jwq4fel3nckx6snneegf";
constexpr std::string_view kStakeMainnet = "stake1u8523hvdkxflk0cv9swltju5vgxds6ly8e8q25ulceutrdgr3d6kh";

TEST(Cardano, ParsesShelleyAddressesAndTheirCredentials) {
  auto base = auth::parse_cardano_address(kBaseMainnet);
  ASSERT_TRUE(base) << base.error().message;
  EXPECT_EQ(base->network, 1);
  EXPECT_EQ(base->raw.size(), 57u);
  ASSERT_TRUE(base->payment_key && base->stake_key);
  auto test = auth::parse_cardano_address(kBaseTestnet);
  ASSERT_TRUE(test);
  EXPECT_EQ(test->network, 0);
  EXPECT_EQ(*test->payment_key, *base->payment_key);  // same keys, other network
  auto stake = auth::parse_cardano_address(kStakeMainnet);
  ASSERT_TRUE(stake);
  EXPECT_FALSE(stake->payment_key);
  EXPECT_EQ(*stake->stake_key, *base->stake_key);
  // Upper case is the same address; mixed case is not an address.
  std::string upper(kStakeMainnet);
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_TRUE(auth::parse_cardano_address(upper));
  upper[3] = static_cast<char>(std::tolower(static_cast<unsigned char>(upper[3])));
  EXPECT_FALSE(auth::parse_cardano_address(upper));
}

TEST(Cardano, RefusesBadChecksumsPrefixesAndLayouts) {
  std::string flipped(kBaseMainnet);
  flipped[20] = flipped[20] == 'q' ? 'p' : 'q';
  EXPECT_FALSE(auth::parse_cardano_address(flipped));
  EXPECT_FALSE(auth::parse_cardano_address("addr1qxyz"));
  EXPECT_FALSE(auth::parse_cardano_address("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"));  // bitcoin
  EXPECT_FALSE(auth::parse_cardano_address(""));
  EXPECT_FALSE(auth::parse_cardano_address(std::string(2000, 'q')));
}

TEST(Cardano, Blake2b224AndCoseRejections) {
  const std::string_view hello = "hello world";
  auto h = auth::blake2b_224(reinterpret_cast<const unsigned char*>(hello.data()), hello.size());
  const unsigned char expected[28] = {0x42, 0xd1, 0x85, 0x4b, 0x7d, 0x69, 0xe3, 0xb5, 0x7c, 0x64, 0xfc, 0xc7, 0xb4, 0xf6,
                                      0x41, 0x71, 0xb4, 0x7d, 0xff, 0x43, 0xfb, 0xa6, 0xac, 0x04, 0x99, 0xff, 0x43, 0x7f};
  EXPECT_EQ(0, std::memcmp(h.data(), expected, 28));
  // A signData result over "hello world" (from cardano_sign.mjs), then damaged in turn.
  const std::string sign1 =
      "845846a2012767616464726573735839015ae193abe694a607531e20f85d8358ade9a474a4f45ac4e15e962da1e8a8dd8db193fb3f0c2c"
      "1df5cb94620cd86be43e4e05539fc678b1b5a166686173686564f44b68656c6c6f20776f726c64584089f85937791275bbd2614b18ba5a"
      "fd4acc699408dccf6b48fe47c4c1a0afc069b91d16b4198d39dbca96853a1f6ef84f306b60049e5f8245995bcd7e8d9b2806";
  const std::string key = "a4010103272006215820d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737";
  auto ok = auth::verify_cip30(sign1, key);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->payload, "hello world");
  EXPECT_FALSE(ok->hashed);
  auto base = auth::parse_cardano_address(kBaseMainnet);
  ASSERT_TRUE(ok->address);
  EXPECT_EQ(*ok->address, base->raw);
  EXPECT_EQ(auth::blake2b_224(ok->public_key.data(), 32), *base->payment_key);
  std::string bad_sig = sign1;
  bad_sig[bad_sig.size() - 1] = bad_sig.back() == '6' ? '7' : '6';
  EXPECT_FALSE(auth::verify_cip30(bad_sig, key));
  std::string other_payload = sign1;
  other_payload.replace(other_payload.find("68656c6c6f"), 10, "6a656c6c6f");  // "jello world"
  EXPECT_FALSE(auth::verify_cip30(other_payload, key));
  EXPECT_FALSE(auth::verify_cip30(sign1.substr(0, 40), key));  // truncated CBOR
  EXPECT_FALSE(auth::verify_cip30(sign1, "a10101"));           // not an Ed25519 key
  EXPECT_FALSE(auth::verify_cip30("zz", key));
}
