#pragma once
// The mark price and the funding clock (perp-rules "Mark and index price", "Funding").
//
// Index samples arrive from market's feed over Redis (any thread) and are validated here: stale
// (older than INDEX_MAX_AGE_MS), from the future, out of order, non-positive, or a jump of more
// than INDEX_MAX_JUMP_PPM from the last accepted sample (unless three samples in a row agree on
// the new level) are refused and logged. Every MARK_INTERVAL_MS a job runs on the engine thread:
// from the index and the book it computes each market's mark
//   median(index + EMA150s(mid - index), median(bid, ask, last trade), EMA30s(that median))
// (the index itself when the book is not two-sided) and journals a SetMark when it changed;
// every FUNDING_SAMPLE_MS it samples the premium from the impact bid/ask; at each multiple of
// FUNDING_INTERVAL_MS it journals a SettleFunding for every interval not yet settled (the engine
// refuses an interval twice, so a restart around the settlement moment charges exactly once).
// The same job is the host's clock hook: it also runs before the first command stamped at or
// after an interval's end, so settlement sees exactly the positions open at that moment.
// Without a fresh index the mark stays where it is and settlement waits: a stale, absurd or
// missing index can never move the mark, so it cannot cause a liquidation by itself.
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine_host.hpp"
#include "hydrox/catalog/jump_guard.hpp"

namespace hydrox::trading {

struct MarkOptions {
  std::int64_t period_ms = 1000;
  std::int64_t premium_sample_ms = 5000;
  std::int64_t funding_interval_ms = 3'600'000;
  std::int64_t index_max_age_ms = 10'000;
  std::int64_t index_max_jump_ppm = 500'000;  // 50 % from the last accepted sample
};

// EMA of perp-rules in integers: num = num * e^(-t/tau) + s * t, den = den * e^(-t/tau) + t, with
// the decay in Q30 fixed point from a Padé approximant and repeated squaring (no floating point).
class IntegerEma {
 public:
  explicit IntegerEma(std::int64_t tau_ms) : tau_ms_(tau_ms) {}
  void add(std::int64_t sample, std::int64_t dt_ms);
  bool empty() const { return den_ == 0; }
  std::int64_t value() const;
  static std::int64_t decay_q30(std::int64_t dt_ms, std::int64_t tau_ms);

 private:
  std::int64_t tau_ms_;
  __int128 num_ = 0, den_ = 0;  // Q30
};

// F (8-hour equivalent, 1e-9) from the premium samples of an interval (perp-rules "Funding").
std::int64_t funding_rate_ppb(const std::vector<std::int64_t>& premiums_ppb);
// P = (max(0, impact_bid - index) - max(0, index - impact_ask)) / index, in 1e-9.
std::int64_t premium_ppb(engine::Price index, std::optional<engine::Price> impact_bid,
                         std::optional<engine::Price> impact_ask);

class MarkFunding {
 public:
  MarkFunding(const Catalog& catalog, EngineHost& host, std::shared_ptr<redis::Client> redis, MarkOptions options);
  ~MarkFunding();
  void start();
  void stop();
  // A message of `hydrox:index:<SYMBOL>`: {"symbol", "price", "time_ms", ...}.
  void on_index(std::string_view message, std::int64_t now_ms);

  struct Index {
    engine::Price price = 0;
    std::int64_t time_ms = 0;
  };
  Index index(std::uint32_t market) const;

 private:
  struct Feed {  // guarded by mu_
    Index accepted;
    catalog::JumpGuard jumps;
  };
  struct State {  // engine thread only
    IntegerEma basis{150'000};
    IntegerEma median{30'000};
    std::int64_t last_ms = 0;
    std::int64_t last_sample_ms = 0;
    std::vector<std::pair<std::int64_t, std::int64_t>> premiums;  // (time, P)
  };

  // `waiting`: set when a market's settlement had to wait for a fresh index.
  std::vector<engine::Command> tick(const engine::Engine& e, std::int64_t now_ms, bool* waiting = nullptr);
  void loop();
  void publish_predictions(std::int64_t now_ms);

  const Catalog& catalog_;
  EngineHost& host_;
  std::shared_ptr<redis::Client> redis_;
  MarkOptions options_;
  mutable std::mutex mu_;
  std::vector<Feed> feeds_;
  std::vector<State> states_;
  std::vector<std::atomic<std::int64_t>> predicted_ppb_;
  std::atomic<bool> running_{false};
  std::mutex wake_mu_;
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace hydrox::trading
