#pragma once
#include <vector>
#include "hydrox/http/client.hpp"
#include "hydrox/service/service.hpp"

namespace hydrox::user {

struct State {
  service::Context* ctx = nullptr;
  std::string operator_token;
  config::Endpoint trading;
  std::shared_ptr<http::Client> client;
  std::string auth_domain, auth_uri;
  std::int64_t auth_chain_id = 1;
  std::vector<std::int64_t> cardano_networks{0, 1};  // accepted Cardano network ids
  // HYDROX_LEGACY_CLIENT_AUTH here too: an address-only connect needs both this service's own
  // switch and the gateway's mark (X-Legacy-Client-Auth, with the internal token).
  bool legacy_client_auth = false;
};

// /api/v1/auth/nonce, /auth/connect, /auth/disconnect (sign_in.cpp).
Result<void> register_sign_in(State& st, http::Router& r);

// The user service's routes and background work (registered into the shared service main).
Result<void> setup(service::Context& ctx);

}  // namespace hydrox::user
