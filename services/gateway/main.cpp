// hydrox-gateway: the only public listener. See README.md in this folder.
#include "gateway_app.hpp"

int main() {
  hydrox::service::Spec spec;
  spec.name = "gateway";
  spec.default_port = 8080;
  spec.default_listen_address = "0.0.0.0";
  spec.uses_database = false;
  spec.builtin_health = false;
  spec.builtin_ops = false;     // /metrics and /ready on OPS_PORT (loopback), not the public port
  spec.trusts_gateway = false;  // it sets the identity headers itself
  spec.setup = hydrox::gateway::setup;
  return hydrox::service::run(spec);
}
