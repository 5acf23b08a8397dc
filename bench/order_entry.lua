-- wrk script: durable order entry through the gateway. 1,000 funded users (ids 00000000-0000-4000-
-- 8000-000000000001 ... 1000), limit orders around 97,000 so that some rest and some cross.
local counter = 0
local statuses = {}

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  math.randomseed(1000 + id)
end

request = function()
  local user = string.format("00000000-0000-4000-8000-%012d", math.random(1, 1000))
  local buy = math.random() < 0.5
  -- Buys 96,990-97,010, sells 96,990-97,010: overlapping, so roughly half cross.
  local price = 96990 + math.random(0, 20)
  local amount = string.format("0.00%d", math.random(1, 5))
  local body = string.format(
    '{"symbol":"BTC_USDM_PERP","side":"%s","type":"Limit","price":"%d","amount":"%s","time_in_force":"GTC"}',
    buy and "Buy" or "Sell", price, amount)
  return wrk.format("POST", "/api/v1/orders",
    { ["Content-Type"] = "application/json", ["X-User-ID"] = user }, body)
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("acknowledged_orders_per_s=%.0f p50_ms=%.2f p99_ms=%.2f requests=%d errors_non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, summary.errors.status))
end
