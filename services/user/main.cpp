// hydrox-user: see README.md in this folder.
#include "user_app.hpp"

int main() {
  hydrox::service::Spec spec;
  spec.name = "user";
  spec.default_port = 8084;
  spec.setup = hydrox::user::setup;
  return hydrox::service::run(spec);
}
