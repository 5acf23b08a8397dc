#pragma once
// The engine lock: a PostgreSQL session-level advisory lock held by the writer connection of the
// one active trading process. Every journal write goes through that same session, so a process
// that lost the lock (its session ended) can no longer write: the lock is also the fence.
// A standby process blocks in take_engine_lock() until the active one's session ends, then
// rebuilds from the journal and starts listening.
#include <cstdint>
#include <memory>
#include <string>

#include "hydrox/core/error.hpp"
#include "hydrox/db/db.hpp"

namespace hydrox::trading {

inline constexpr std::int64_t kEngineLockKey = 0x487964726f58;  // "HydroX"

enum class LockWait { no, yes };

// LockWait::no: the lock now or Code::conflict (another process holds it) / Code::unavailable.
// LockWait::yes: waits (reconnecting while PostgreSQL is away) until it holds the lock.
Result<std::unique_ptr<db::Connection>> take_engine_lock(const std::string& url, LockWait wait);

}  // namespace hydrox::trading
