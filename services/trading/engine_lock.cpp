#include "engine_lock.hpp"

#include <chrono>
#include <thread>

#include "hydrox/log/log.hpp"

namespace hydrox::trading {

namespace {
constexpr db::Query kTryLock{"engine_lock_try", "SELECT pg_try_advisory_lock($1)"};
constexpr db::Query kLock{"engine_lock_wait", "SELECT pg_advisory_lock($1)"};
// Every statement of the writer finds its rows by key (an UPDATE joins the batch's unnest() arrays
// to the primary key). Its prepared statements get generic plans after five runs, and a plan made
// while a table was still nearly empty (never analysed, so estimated at ten pages) stays a
// sequential scan with a hash join as the table grows: 4 ms per batch at 12,000 orders, rising
// with every order. Without sequential scans and hash or merge joins, the planner can only pick
// the index, whatever its estimates.
constexpr db::Query kKeyedPlans{"writer_keyed_plans",
                                "SELECT set_config('enable_seqscan', 'off', false), set_config('enable_hashjoin', 'off', false),"
                                " set_config('enable_mergejoin', 'off', false)"};

Result<std::unique_ptr<db::Connection>> writer(std::unique_ptr<db::Connection> c) {
  if (auto r = c->exec(kKeyedPlans, {}); !r) return r.error();
  return c;
}
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
      if (auto w = writer(std::move(*c)); w || wait == LockWait::no) return w;
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
        if (auto w = writer(std::move(*c)); w) return w;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace hydrox::trading
