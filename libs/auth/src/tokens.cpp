#include "hydrox/auth/tokens.hpp"

#include <sodium.h>

#include <stdexcept>

#include "hydrox/json/json.hpp"

namespace hydrox::auth {

namespace {
struct SodiumInit {
  SodiumInit() {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialize");
  }
};
void ensure_sodium() { static SodiumInit once; }
}  // namespace

std::string new_token(Kind kind) {
  ensure_sodium();
  unsigned char raw[32];
  randombytes_buf(raw, sizeof raw);
  char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(b64, sizeof b64, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return std::string(kind == Kind::session ? "hxs_" : "hxk_") + b64;
}

std::string hash_hex(std::string_view token) {
  ensure_sodium();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(token.data()), token.size());
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return hex;
}

std::string redis_key(std::string_view hash) { return "hydrox:auth:" + std::string(hash); }

std::string_view scope_name(Scope s) { return s == Scope::read ? "read" : "trade"; }
std::string_view kind_name(Kind k) { return k == Kind::session ? "session" : "api_key"; }

std::optional<Scope> parse_scope(std::string_view s) {
  if (s == "read") return Scope::read;
  if (s == "trade") return Scope::trade;
  return std::nullopt;
}

std::string encode(const Credential& c) {
  json::Writer w;
  w.begin_object().field("user_id", c.user.value().to_string()).field("kind", kind_name(c.kind));
  w.field("scope", scope_name(c.scope)).field("expires_ms", c.expires_ms).end_object();
  return w.take();
}

std::optional<Credential> decode(std::string_view text) {
  auto doc = json::parse(text);
  if (!doc || !doc->is_object()) return std::nullopt;
  const auto* u = doc->find("user_id");
  const auto* k = doc->find("kind");
  const auto* s = doc->find("scope");
  const auto* e = doc->find("expires_ms");
  if (!u || !u->is_string() || !k || !k->is_string() || !s || !s->is_string() || !e) return std::nullopt;
  auto id = Uuid::parse(u->as_string());
  auto scope = parse_scope(s->as_string());
  auto expires = e->as_int(0, INT64_MAX);
  if (!id || !scope || !expires) return std::nullopt;
  return Credential{UserId{*id}, k->as_string() == "api_key" ? Kind::api_key : Kind::session, *scope, *expires};
}

}  // namespace hydrox::auth
