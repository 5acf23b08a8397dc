#include "engine_lock.hpp"

#include <chrono>
#include <thread>

#include "hydrox/log/log.hpp"

namespace hydrox::trading {

namespace {
constexpr db::Query kTryLock{"engine_lock_try", "SELECT pg_try_advisory_lock($1)"};
constexpr db::Query kLock{"engine_lock_wait", "SELECT pg_advisory_lock($1)"};
}  // namespace

Result<std::unique_ptr<db::Connection>> take_engine_lock(const std::string& url, LockWait wait) {
  db::PoolOptions o;
  o.application_name = "hydrox-trading-writer";
  const std::string key = std::to_string(kEngineLockKey);
  bool said_waiting = false;
  for (;;) {
    auto c = db::connect(url, o);
    if (!c) {
      if (wait == LockWait::no) return c.error();
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      continue;
    }
    auto got = (*c)->exec(kTryLock, {key});
    if (!got) {
      if (wait == LockWait::no) return got.error();
    } else if (got->size() == 1 && got->get(0, 0) == "t") {
      return std::move(*c);
    } else if (wait == LockWait::no) {
      return fail(Code::conflict, "another trading process holds the engine lock");
    } else {
      if (!said_waiting) {
        log::info("standby: another trading process is active; waiting for the engine lock");
        said_waiting = true;
      }
      // Blocks in PostgreSQL until the active process's session ends (or this session breaks).
      if (auto r = (*c)->exec(kLock, {key}); r) {
        log::info("engine lock taken: this process is now the active trading engine");
        return std::move(*c);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace hydrox::trading
