#pragma once
// The gateway's handlers; each file holds one.
#include <memory>
#include <string>
#include <vector>

#include "hydrox/config/env.hpp"
#include "hydrox/http/client.hpp"
#include "hydrox/http/server.hpp"
#include "hydrox/service/service.hpp"

namespace hydrox::gateway {

struct Upstream {
  std::string name;  // market, trading, vault, user
  config::Endpoint endpoint;
};

// GET /health: 200 only when the gateway and all four services are ready, else 503 naming the
// failing ones. Each service's /ready is asked afresh, with a short timeout.
http::Handler make_health(service::Context& ctx, std::vector<Upstream> upstreams,
                          std::shared_ptr<http::Client> client);

// Forwards the request to `to` over the pooled keep-alive client. Client-sent identity
// (X-User-ID) is removed; upstream failures become 503 JSON within the client's timeouts.
http::Handler make_proxy(Upstream to, std::shared_ptr<http::Client> client);

// Removes headers a client must never choose (identity) from a request about to be forwarded.
void strip_identity(http::Request& req);
// Legacy client mode (HYDROX_LEGACY_CLIENT_AUTH=1, off by default): keep a client's X-User-ID.
void set_legacy_client_auth(bool on);

// CORS for the configured origins: preflight answered here, headers added to every answer.
http::Middleware make_cors(std::vector<std::string> allowed_origins);

// GET /api/v1/openapi.json
http::Handler make_openapi();

}  // namespace hydrox::gateway
