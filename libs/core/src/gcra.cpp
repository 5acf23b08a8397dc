#include "hydrox/core/gcra.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

namespace hydrox {

Gcra::Decision Gcra::take(const std::string& key, Limit limit, double now) {
  const double burst = std::max(1.0, limit.burst);
  const double interval = std::max(limit.interval_ms, 1e-6);
  Shard& shard = shards_[std::hash<std::string>{}(key) % shards_.size()];
  std::lock_guard lock(shard.mu);
  if (now >= shard.next_prune_ms || shard.tat.size() >= kMaxKeysPerShard) {
    std::erase_if(shard.tat, [&](const auto& kv) { return kv.second <= now; });
    // Still full (keys sprayed faster than buckets refill): drop a quarter at once, so the next
    // prune is a quarter of the shard's inserts away (each insert stays O(1) on average). The
    // ones dropped are those nearest to full (the earliest arrival times): a key that is being
    // throttled has the latest and is kept, so spraying new keys cannot reset it.
    if (shard.tat.size() >= kMaxKeysPerShard) {
      std::vector<double> times;
      times.reserve(shard.tat.size());
      for (const auto& kv : shard.tat) times.push_back(kv.second);
      const std::size_t drop = shard.tat.size() - kMaxKeysPerShard * 3 / 4;
      std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(drop - 1), times.end());
      const double cut = times[drop - 1];
      std::size_t dropped = 0;
      std::erase_if(shard.tat, [&](const auto& kv) { return kv.second <= cut && dropped++ < drop; });
    }
    shard.next_prune_ms = now + 10'000;
  }
  auto [it, fresh] = shard.tat.try_emplace(key, now);
  const double tat = std::max(it->second, now);
  const double next = tat + interval;
  constexpr double kEpsilon = 1e-6;  // requests exactly on the boundary are allowed
  Decision d;
  if (next - now <= burst * interval + kEpsilon) {
    it->second = next;
    d.allowed = true;
    d.remaining = static_cast<std::int64_t>(std::floor((burst * interval - (next - now)) / interval + kEpsilon));
    d.reset_s = static_cast<std::int64_t>(std::ceil((next - now) / 1000.0));
  } else {
    if (fresh) shard.tat.erase(it);
    d.allowed = false;
    d.remaining = 0;
    d.retry_after_s =
        std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil((next - now - burst * interval) / 1000.0)));
    d.reset_s = static_cast<std::int64_t>(std::ceil((tat - now) / 1000.0));
  }
  return d;
}

std::size_t Gcra::keys() {
  std::size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.tat.size();
  }
  return n;
}

}  // namespace hydrox
