#pragma once
// Opaque credentials: session tokens and API keys are 32 random bytes (libsodium's CSPRNG),
// shown once, stored only as SHA-256 hashes. The gateway and the user service share the Redis
// record layout below.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "hydrox/core/ids.hpp"

namespace hydrox::auth {

enum class Kind : std::uint8_t { session, api_key };
enum class Scope : std::uint8_t { read, trade };

struct Credential {
  UserId user;
  Kind kind = Kind::session;
  Scope scope = Scope::trade;
  std::int64_t expires_ms = 0;  // 0: no expiry (API keys until revoked)
};

// "hxs_…" (session) or "hxk_…" (API key): a prefix and 43 characters of base64url.
std::string new_token(Kind kind);
// Lower-case hex of SHA-256(token).
std::string hash_hex(std::string_view token);
// Redis key of a credential: hydrox:auth:<hash>
std::string redis_key(std::string_view hash);
// Set in Redis by the user service once every live credential is there: a missing marker means
// Redis lost them (restarted empty) and a miss proves nothing.
inline constexpr std::string_view kLoadedMarker = "hydrox:auth:loaded";

std::string encode(const Credential& c);
std::optional<Credential> decode(std::string_view json);
std::string_view scope_name(Scope s);
std::optional<Scope> parse_scope(std::string_view s);
std::string_view kind_name(Kind k);

}  // namespace hydrox::auth
