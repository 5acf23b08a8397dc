#include "handlers.hpp"

namespace hydrox::gateway {

// Generated at build time from docs/openapi.yaml (tools/openapi_to_cpp.py).
extern const char* const kOpenApiJson;

http::Handler make_openapi() {
  return [](http::Request&, http::Respond respond) {
    auto r = http::Response::json(200, kOpenApiJson);
    r.set_header("Cache-Control", "public, max-age=60");
    respond(std::move(r));
  };
}

}  // namespace hydrox::gateway
