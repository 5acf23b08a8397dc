// hydrox-trading: see README.md in this folder.
#include "trading_app.hpp"

int main() {
  hydrox::service::Spec spec;
  spec.name = "trading";
  spec.default_port = 8082;
  spec.setup = hydrox::trading::setup;
  return hydrox::service::run(spec);
}
