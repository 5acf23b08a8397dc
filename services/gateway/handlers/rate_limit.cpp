// Token buckets kept in Redis, so that several gateways share one budget per IP and per user.
// One EVAL per check (the script refills, takes a token and answers in one round trip, using
// Redis's clock). If Redis is unreachable the request is let through: availability of order
// entry outranks strict limiting, and the outage is logged.
#include <atomic>

#include "handlers.hpp"
#include "hydrox/log/log.hpp"

namespace hydrox::gateway {

namespace {

constexpr const char* kScript = R"LUA(
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2]) / 60  -- tokens per second
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil then tokens = cap; ts = now end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 1000)
local retry_ms = 0
if allowed == 0 then retry_ms = math.ceil((1 - tokens) * 1000 / rate) end
return {allowed, math.floor(tokens), retry_ms, math.ceil((cap - tokens) * 1000 / rate)}
)LUA";

}  // namespace

RateLimiter::Decision RateLimiter::take(const std::string& key, const Bucket& bucket) {
  Decision d;
  d.limit = bucket.capacity;
  d.remaining = bucket.capacity;
  if (bucket.capacity <= 0) return d;  // disabled
  // The bucket's shape is part of its key: a changed limit starts from a full bucket instead of
  // inheriting a state measured against another capacity.
  const std::string redis_key = "hydrox:rl:" + std::to_string(bucket.capacity) + "/" +
                                std::to_string(bucket.per_minute) + ":" + key;
  auto r = ctx_.redis->command({"EVAL", kScript, "1", redis_key, std::to_string(bucket.capacity),
                                std::to_string(bucket.per_minute)});
  if (!r || r->elements.size() != 4) {
    static std::atomic<int> failures{0};
    if (failures.fetch_add(1) % 100 == 0) log::warn("rate limiter unavailable; letting requests through");
    return d;
  }
  d.allowed = r->elements[0].integer == 1;
  d.remaining = r->elements[1].integer;
  d.retry_after_s = (r->elements[2].integer + 999) / 1000;
  d.reset_s = (r->elements[3].integer + 999) / 1000;
  return d;
}

void RateLimiter::apply(const Decision& d, http::Response& res) {
  if (d.limit <= 0) return;
  res.set_header("RateLimit-Limit", std::to_string(d.limit));
  res.set_header("RateLimit-Remaining", std::to_string(d.remaining));
  res.set_header("RateLimit-Reset", std::to_string(d.reset_s));
  if (!d.allowed) res.set_header("Retry-After", std::to_string(std::max<std::int64_t>(1, d.retry_after_s)));
}

}  // namespace hydrox::gateway
