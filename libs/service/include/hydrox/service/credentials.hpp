#pragma once
// Resolving a bearer credential (by the SHA-256 of its secret) to its record, for the gateway and
// for market's WebSocket AUTH message. Redis (`hydrox:auth:<sha256>`) first; a miss there is final
// only while the user service's marker (`hydrox:auth:loaded`) says Redis holds every credential.
// When Redis errors or has lost them, the user service answers from PostgreSQL
// (GET /internal/v1/credentials/{sha256}). Blocking: call it on the blocking pool.
#include <optional>
#include <string>

#include "hydrox/auth/tokens.hpp"
#include "hydrox/config/env.hpp"
#include "hydrox/http/client.hpp"
#include "hydrox/service/service.hpp"

namespace hydrox::service {

// nullopt: no live (unrevoked, unexpired) credential has this hash.
Result<std::optional<auth::Credential>> resolve_credential(Context& ctx, http::Client& client,
                                                           const config::Endpoint& user_service,
                                                           const std::string& hash);

}  // namespace hydrox::service
