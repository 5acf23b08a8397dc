#!/usr/bin/env bash
# Durable order entry over HTTP keep-alive through the gateway (issue #4), and nginx serving a
# small static body with the same load tool in the same run, as the ceiling. Everything on this
# machine: PostgreSQL (fsync on), Redis, trading, gateway, wrk, nginx.
#   bench/order_entry.sh [DURATION_S] [CONNECTIONS]
# RATE_LIMITS=on keeps the gateway's Redis token buckets in the path (buckets too large to refuse
# anything); by default they are off, as the figures in RESULTS.md before session 9 were taken.
. "$(dirname "$0")/lib.sh"
duration=${1:-20}
conns=${2:-64}
start_infra
tp=$(port); gp=$(port); np=$(port)
PORT=$tp OPERATOR_TOKEN=bench LOG_LEVEL=warn "$bin/hydrox-trading" 2>"$work/trading.log" &
pids+=($!)
sleep 0.5
if [ "${RATE_LIMITS:-off}" = on ]; then
  limits=(RATE_LIMIT_IP_BURST=10000000 RATE_LIMIT_IP_PER_MIN=100000000 RATE_LIMIT_USER_BURST=10000000 RATE_LIMIT_USER_PER_MIN=100000000)
else
  limits=(RATE_LIMIT_IP_BURST=0 RATE_LIMIT_USER_BURST=0)
fi
env PORT=$gp TRADING_SERVICE_URL=http://127.0.0.1:$tp HYDROX_LEGACY_CLIENT_AUTH=1 "${limits[@]}" LOG_LEVEL=error "$bin/hydrox-gateway" 2>"$work/gateway.log" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$tp/health" >/dev/null && curl -s -o /dev/null "http://127.0.0.1:$gp/api/v1/openapi.json" && break; sleep 0.1; done
curl -sf -XPOST "http://127.0.0.1:$tp/internal/v1/marks" -H 'Authorization: Bearer bench' -d '{"symbol":"BTC_USDM_PERP","mark_price":"97000"}' >/dev/null
python3 - "$tp" <<'PY'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(1, 1001):
    body = json.dumps({"user_id": f"00000000-0000-4000-8000-{i:012d}", "amount": "1000000", "idempotency_key": f"bench-{i}"})
    c.request("POST", "/internal/v1/deposits", body=body, headers={"Authorization": "Bearer bench"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
echo "== order entry through the gateway: wrk -t2 -c$conns -d${duration}s (1,000 funded users, ~half crossing)"
wrk -t2 -c"$conns" -d"${duration}s" --latency -s bench/order_entry.lua "http://127.0.0.1:$gp" | tee "$work/wrk-orders.txt" | grep -E "Requests/sec|Latency|acknowledged|Non-2xx|Socket errors" || true
curl -s "http://127.0.0.1:$tp/internal/v1/invariants" -H 'Authorization: Bearer bench'; echo
curl -s "http://127.0.0.1:$tp/metrics" | grep -E "^trading_batch_commit_seconds_(count|sum)" || true

echo "== nginx, a small static body, same tool: wrk -t2 -c$conns -d${duration}s"
mkdir -p "$work/www"
echo '{"status":"ok"}' >"$work/www/index.json"
start_nginx "$work/www" "$np"
wrk -t2 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$np/index.json" | grep -E "Requests/sec|Latency|50%|99%" || true
