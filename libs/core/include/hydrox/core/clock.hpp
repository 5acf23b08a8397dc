#pragma once
// Time as a dependency: services use SystemClock, tests a ManualClock they move by hand.
#include <atomic>
#include <cstdint>
#include <string>

namespace hydrox {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t now_ms() const = 0;  // Unix milliseconds, UTC
  std::int64_t now_s() const { return now_ms() / 1000; }
};

class SystemClock final : public Clock {
 public:
  std::int64_t now_ms() const override;
  static const SystemClock& instance();
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t start_ms = 0) : ms_(start_ms) {}
  std::int64_t now_ms() const override { return ms_.load(); }
  void set_ms(std::int64_t ms) { ms_.store(ms); }
  void advance_ms(std::int64_t d) { ms_.fetch_add(d); }

 private:
  std::atomic<std::int64_t> ms_;
};

// RFC 3339 UTC with milliseconds, e.g. 2026-11-26T11:38:40.123Z
std::string format_rfc3339_ms(std::int64_t unix_ms);

}  // namespace hydrox
