// hydrox-migrate: applies db/migrations to DATABASE_URL (each file once, in order).
// Usage: DATABASE_URL=postgres://... hydrox-migrate [MIGRATIONS_DIR]
#include <cstdio>

#include "hydrox/config/env.hpp"
#include "hydrox/db/db.hpp"
#include "hydrox/log/log.hpp"

int main(int argc, char** argv) {
  using namespace hydrox;
  log::init("migrate");
  config::Env env;
  auto url = env.required("DATABASE_URL");
  if (!url) {
    std::fprintf(stderr, "init config failed: %s\n", url.error().message.c_str());
    return 1;
  }
  std::string dir = argc > 1 ? argv[1] : *env.string("MIGRATIONS_DIR", "db/migrations");
  db::Pool pool(*url, db::PoolOptions{1, std::chrono::milliseconds(5000), 5, "hydrox-migrate"});
  auto lease = pool.acquire();
  if (!lease) {
    std::fprintf(stderr, "init database failed: %s\n", lease.error().message.c_str());
    return 1;
  }
  auto applied = db::migrate(**lease, dir);
  if (!applied) {
    std::fprintf(stderr, "migrate failed: %s\n", applied.error().message.c_str());
    return 1;
  }
  std::printf("migrations: %d applied\n", *applied);
  return 0;
}
