#include <gtest/gtest.h>

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
