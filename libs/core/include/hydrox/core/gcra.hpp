#pragma once
// Rate limiting by GCRA (the generic cell rate algorithm): per key one number, the theoretical
// arrival time (TAT) of the next request at the sustained rate. A request at `now` is allowed
// when TAT + interval - now <= burst × interval, and moves TAT on by one interval. Equivalent to a
// token bucket of `burst` tokens refilled every `interval`, without a refill step. Thread-safe
// (16 shards, each its own mutex); a key whose TAT has passed is a full bucket, so such entries
// are dropped every 10 s, and at most kMaxKeysPerShard keys are kept per shard (when full, the
// quarter nearest to full goes; a throttled key stays).
#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace hydrox {

class Gcra {
 public:
  struct Limit {
    double burst = 1;         // requests allowed at once (at least 1)
    double interval_ms = 1000;  // one more request allowed every interval
  };
  struct Decision {
    bool allowed = true;
    std::int64_t remaining = 0;      // requests still allowed at once after this one
    std::int64_t reset_s = 0;        // seconds until the bucket is full again
    std::int64_t retry_after_s = 0;  // refused: seconds until one request is allowed (>= 1)
  };
  static constexpr std::size_t kMaxKeysPerShard = 65'536;

  Decision take(const std::string& key, Limit limit, double now_ms);
  std::size_t keys();  // entries kept (a test's view of the bound)

 private:
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, double> tat;
    double next_prune_ms = 0;
  };
  std::array<Shard, 16> shards_;
};

}  // namespace hydrox
