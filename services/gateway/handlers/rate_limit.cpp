// Rate limits decided in the gateway (GCRA), the budget divided among the live gateways
// (handlers.hpp). A request costs Redis nothing; each gateway costs it one pipeline a second.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>

#include "handlers.hpp"
#include "hydrox/log/log.hpp"

namespace hydrox::gateway {

namespace {

constexpr const char* kLiveSet = "hydrox:gateways";
constexpr std::int64_t kAnnounceMs = 1000;
constexpr std::int64_t kAliveMs = 5000;  // a gateway not heard from for this long is gone

double steady_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string random_id() {
  std::random_device rd;
  const auto hi = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(hi));
  return buf;
}

}  // namespace

RateLimiter::RateLimiter(service::Context& ctx, Limits limits)
    : ctx_(ctx), limits_(limits), id_(random_id()) {
  if (!ctx_.redis) return;
  announce();  // before the first request: a gateway joining a fleet does not start with all of it
  announcer_ = std::thread([this] { announce_loop(); });
}

RateLimiter::~RateLimiter() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (announcer_.joinable()) announcer_.join();
  if (ctx_.redis) (void)ctx_.redis->command({"ZREM", kLiveSet, id_});
}

Result<int> RateLimiter::announce() {
  // Redis's clock scores the set, so gateways whose own clocks differ still agree on who is alive.
  auto time = ctx_.redis->command({"TIME"});
  if (!time) return time.error();
  if (time->elements.size() != 2) return fail(Code::internal, "unexpected TIME answer");
  const std::int64_t now = std::strtoll(time->elements[0].str.c_str(), nullptr, 10) * 1000 +
                           std::strtoll(time->elements[1].str.c_str(), nullptr, 10) / 1000;
  auto added = ctx_.redis->command({"ZADD", kLiveSet, std::to_string(now), id_});
  if (!added) return added.error();
  auto pruned = ctx_.redis->command({"ZREMRANGEBYSCORE", kLiveSet, "-inf", std::to_string(now - kAliveMs)});
  if (!pruned) return pruned.error();
  auto count = ctx_.redis->command({"ZCARD", kLiveSet});
  if (!count) return count.error();
  const int n = static_cast<int>(std::clamp<std::int64_t>(count->integer, 1, 1000));
  if (n != gateways_.exchange(n)) log::info("rate limits divided among the live gateways", {{"gateways", n}});
  return n;
}

void RateLimiter::announce_loop() {
  int failures = 0;
  for (;;) {
    {
      std::unique_lock lock(stop_mu_);
      if (stop_cv_.wait_for(lock, std::chrono::milliseconds(kAnnounceMs), [&] { return stopping_; })) return;
    }
    if (auto n = announce(); n) {
      failures = 0;
    } else if (failures++ % 30 == 0) {
      log::warn("cannot announce this gateway in Redis; the rate limits keep the last share",
                {{"gateways", gateways_.load()}, {"error", n.error().message}});
    }
  }
}

RateLimiter::Decision RateLimiter::take_one(const Ask& ask, double now) {
  const Bucket& b = ask.bucket;
  const double n = gateways_.load();
  // This gateway's share: burst and rate divided by the live gateways (at least one request).
  const Gcra::Limit share{std::max(1.0, static_cast<double>(b.capacity) / n),
                          b.per_minute > 0 ? 60'000.0 * n / static_cast<double>(b.per_minute) : 1e15};
  const Gcra::Decision g = gcra_.take(ask.key, share, now);
  return Decision{g.allowed, static_cast<std::int64_t>(std::floor(share.burst)), g.remaining, g.reset_s,
                  g.retry_after_s};
}

std::pair<RateLimiter::Decision, RateLimiter::Decision> RateLimiter::take(const Ask& first, const Ask& second) {
  std::pair<Decision, Decision> out;
  const double now = steady_ms();
  for (auto [ask, decision] : {std::pair{&first, &out.first}, std::pair{&second, &out.second}}) {
    if (ask->bucket.capacity <= 0) continue;  // disabled
    *decision = take_one(*ask, now);
    if (!decision->allowed) break;  // the second bucket is not reached
  }
  return out;
}

void RateLimiter::apply(const Decision& d, http::Response& res) {
  if (d.limit <= 0) return;
  res.set_header("RateLimit-Limit", std::to_string(d.limit));
  res.set_header("RateLimit-Remaining", std::to_string(d.remaining));
  res.set_header("RateLimit-Reset", std::to_string(d.reset_s));
  if (!d.allowed) res.set_header("Retry-After", std::to_string(std::max<std::int64_t>(1, d.retry_after_s)));
}

}  // namespace hydrox::gateway
