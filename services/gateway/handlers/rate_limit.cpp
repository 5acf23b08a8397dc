// Token buckets kept in Redis, so that several gateways share one budget per IP and per user.
// One EVALSHA per request for all its buckets (the script refills, takes a token from each and
// answers in one round trip, using Redis's clock). If Redis is unreachable the request is let
// through: availability of order entry outranks strict limiting, and the outage is logged.
#include <atomic>

#include "handlers.hpp"
#include "hydrox/log/log.hpp"

namespace hydrox::gateway {

namespace {

// The buckets of KEYS in order (ARGV: capacity and tokens per minute of each), stopping at the
// first that refuses: 4 values (allowed, tokens left, retry ms, ms until full) per bucket reached.
constexpr const char* kScript = R"LUA(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i - 1])
  local rate = tonumber(ARGV[2 * i]) / 60  -- tokens per second
  local b = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(b[1])
  local ts = tonumber(b[2])
  if tokens == nil then tokens = cap; ts = now end
  tokens = math.min(cap, tokens + math.max(0, now - ts) * rate / 1000)
  local allowed = 0
  if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(cap / rate * 1000) + 1000)
  local retry_ms = 0
  if allowed == 0 then retry_ms = math.ceil((1 - tokens) * 1000 / rate) end
  table.insert(out, allowed)
  table.insert(out, math.floor(tokens))
  table.insert(out, retry_ms)
  table.insert(out, math.ceil((cap - tokens) * 1000 / rate))
  if allowed == 0 then break end
end
return out
)LUA";

}  // namespace

RateLimiter::RateLimiter(service::Context& ctx, Limits limits)
    : ctx_(ctx), limits_(limits), script_(std::make_unique<redis::Script>(kScript)) {}
RateLimiter::~RateLimiter() = default;

std::pair<RateLimiter::Decision, RateLimiter::Decision> RateLimiter::take(const Ask& first,
                                                                          const Ask& second) {
  std::pair<Decision, Decision> out;
  Decision* decisions[2] = {&out.first, &out.second};
  const Ask* asks[2] = {&first, &second};
  std::vector<std::string> keys, args;
  std::vector<Decision*> taken;  // the decisions the script answers, in order
  for (int i = 0; i < 2; ++i) {
    const Bucket& b = asks[i]->bucket;
    decisions[i]->limit = b.capacity;
    decisions[i]->remaining = b.capacity;
    if (b.capacity <= 0) continue;  // disabled
    // The bucket's shape is part of its key: a changed limit starts from a full bucket instead of
    // inheriting a state measured against another capacity.
    keys.push_back("hydrox:rl:" + std::to_string(b.capacity) + "/" + std::to_string(b.per_minute) +
                   ":" + asks[i]->key);
    args.push_back(std::to_string(b.capacity));
    args.push_back(std::to_string(b.per_minute));
    taken.push_back(decisions[i]);
  }
  if (keys.empty()) return out;
  auto r = ctx_.redis->eval(*script_, keys, args);
  if (!r || r->elements.size() % 4 != 0 || r->elements.size() > 4 * taken.size()) {
    static std::atomic<int> failures{0};
    if (failures.fetch_add(1) % 100 == 0) log::warn("rate limiter unavailable; letting requests through");
    return out;
  }
  for (std::size_t i = 0; i * 4 < r->elements.size(); ++i) {
    Decision& d = *taken[i];
    d.allowed = r->elements[4 * i].integer == 1;
    d.remaining = r->elements[4 * i + 1].integer;
    d.retry_after_s = (r->elements[4 * i + 2].integer + 999) / 1000;
    d.reset_s = (r->elements[4 * i + 3].integer + 999) / 1000;
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
