// hydrox-market: see README.md in this folder.
#include "market_app.hpp"

int main() {
  hydrox::service::Spec spec;
  spec.name = "market";
  spec.default_port = 8081;
  spec.setup = hydrox::market::setup;
  return hydrox::service::run(spec);
}
