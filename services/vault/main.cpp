// hydrox-vault: see README.md in this folder.
#include "vault_app.hpp"

int main() {
  hydrox::service::Spec spec;
  spec.name = "vault";
  spec.default_port = 8083;
  spec.setup = hydrox::vault::setup;
  return hydrox::service::run(spec);
}
