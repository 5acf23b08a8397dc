#!/usr/bin/env bash
# Durable order entry through the gateway (issues 4 and 22), and nginx serving a small static body
# with the same load tool in the same run, as the ceiling. Everything on this machine: PostgreSQL
# (fsync on), Redis, trading, gateway, market, wrk, nginx.
#   bench/order_entry.sh [DURATION_S] [CONNECTIONS]
# BASE_BIN_DIR=<another build's bin> (and BASE_MIGRATIONS=<its db/migrations>) first runs the same
# HTTP load against that build, on its own fresh databases: an A/B in one run.
# RATE_LIMITS=off takes the gateway's rate limits out of the path; by default they are on (buckets
# too large to refuse anything), as issue 22 measures.
# WS=0 skips the WebSocket order entry run (the same load as orders over /ws, this build only).
. "$(dirname "$0")/lib.sh"
duration=${1:-20}
conns=${2:-64}
if [ "${RATE_LIMITS:-on}" = on ]; then
  limits=(RATE_LIMIT_IP_BURST=10000000 RATE_LIMIT_IP_PER_MIN=100000000 RATE_LIMIT_USER_BURST=10000000 RATE_LIMIT_USER_PER_MIN=100000000)
else
  limits=(RATE_LIMIT_IP_BURST=0 RATE_LIMIT_USER_BURST=0)
fi

# start_stack BIN_DIR MIGRATIONS WITH_MARKET: trading and gateway (and market, for /ws) on fresh
# databases, the mark set, 1,000 users funded.
start_stack() {
  local b=$1
  start_infra "$b" "$2"
  read -r tp gp mp < <(ports 3)
  PORT=$tp OPERATOR_TOKEN=bench LOG_LEVEL=warn "$b/hydrox-trading" 2>"$work/trading.log" &
  pids+=($!)
  local market_env=()
  if [ "$3" = 1 ]; then
    # WebSocket limits as large as the gateway's here: the load, not the limits, is measured.
    PORT=$mp TRADING_SERVICE_URL=http://127.0.0.1:$tp INDEX_FEED=none WS_MAX_MESSAGES_PER_S=1000000 WS_ORDER_BURST=10000000 \
      WS_ORDERS_PER_S=10000000 LOG_LEVEL=warn "$b/hydrox-market" 2>"$work/market.log" &
    pids+=($!)
    market_env=(MARKET_SERVICE_URL=http://127.0.0.1:$mp)
  fi
  sleep 0.5
  env PORT=$gp LISTEN_ADDRESS=127.0.0.1 TRADING_SERVICE_URL=http://127.0.0.1:$tp "${market_env[@]}" HYDROX_LEGACY_CLIENT_AUTH=1 "${limits[@]}" \
    LOG_LEVEL=error "$b/hydrox-gateway" 2>"$work/gateway.log" &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$tp/health" >/dev/null && curl -s -o /dev/null "http://127.0.0.1:$gp/api/v1/openapi.json" && break; sleep 0.1; done
  if ! curl -s -o /dev/null "http://127.0.0.1:$gp/api/v1/openapi.json"; then
    echo "the gateway did not start:"; tail -3 "$work/gateway.log"; exit 1
  fi
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
}

# The projector's backlog (acknowledged commands not yet in the read tables), sampled every second.
sample_backlog() {
  while sleep 1; do
    curl -s "http://127.0.0.1:$tp/metrics" | awk '/^trading_projector_backlog_commands /{print $2}'
  done >"$work/backlog.txt" 2>/dev/null
}

# Projector lag from the histogram: count, mean, and the bucket bounds that hold p50 and p99.
projector_report() {
  curl -s "http://127.0.0.1:$tp/metrics" | python3 -c '
import re, sys
buckets, total, count = [], 0.0, 0
for line in sys.stdin:
    m = re.match(r"trading_projector_lag_seconds_bucket\{le=\"([^\"]+)\"\} (\S+)", line)
    if m: buckets.append((m.group(1), float(m.group(2))))
    if line.startswith("trading_projector_lag_seconds_sum "): total = float(line.split()[1])
    if line.startswith("trading_projector_lag_seconds_count "): count = int(float(line.split()[1]))
if not count:
    print("projector: no lag recorded (this build has no projector)"); sys.exit()
def bound(p):
    for le, c in buckets:
        if c >= p * count: return le
print(f"projector lag (ack -> rows committed), {count} batches: mean {total / count * 1000:.1f} ms, p50 <= {float(bound(0.5)) * 1000:g} ms, p99 <= {float(bound(0.99)) * 1000:g} ms")
'
  if [ -s "$work/backlog.txt" ]; then
    echo "projector backlog each second (commands): $(tr '\n' ' ' <"$work/backlog.txt")"
  fi
}

# Cores each program used during the load (since cpu0.txt), the busiest first.
cpu_report() {
  bench/cpu_by_process.sh >"$work/cpu1.txt"
  echo "cores used during the load: $(join "$work/cpu0.txt" "$work/cpu1.txt" | awk -v d="$duration" '{c=($3-$2)/100/d; if (c>=0.01) printf "%s %.2f\n", $1, c}' | sort -k2 -rn | tr '\n' ' ' | sed 's/ \([0-9.]*\) /=\1, /g')"
}

run_http() {  # LABEL BIN_DIR MIGRATIONS
  echo "== $1: order entry through the gateway: wrk -t2 -c$conns -d${duration}s (1,000 funded users, ~half crossing), rate limits ${RATE_LIMITS:-on}"
  start_stack "$2" "$3" 0
  sample_backlog &
  local sampler=$!
  bench/cpu_by_process.sh >"$work/cpu0.txt"
  wrk -t2 -c"$conns" -d"${duration}s" --latency -s bench/order_entry.lua "http://127.0.0.1:$gp" | tee "$work/wrk-orders.txt" | grep -E "Requests/sec|Latency|acknowledged|Non-2xx|Socket errors" || true
  cpu_report
  kill $sampler 2>/dev/null || true; wait $sampler 2>/dev/null || true
  curl -s "http://127.0.0.1:$tp/internal/v1/invariants" -H 'Authorization: Bearer bench' | head -c 300; echo
  curl -s "http://127.0.0.1:$tp/metrics" | grep -E "^trading_batch_commit_seconds_(count|sum)" || true
  projector_report
  rm -f "$work/backlog.txt"
  stop_pids
  stop_infra
}

if [ -n "${BASE_BIN_DIR:-}" ]; then
  run_http "A: $BASE_BIN_DIR" "$BASE_BIN_DIR" "${BASE_MIGRATIONS:-db/migrations}"
fi
run_http "B: $bin" "$bin" db/migrations

if [ "${WS:-1}" = 1 ]; then
  echo "== B: the same load as WebSocket order entry (order.place on /ws through the gateway): $conns connections, ${duration}s"
  start_stack "$bin" db/migrations 1
  sample_backlog &
  sampler=$!
  bench/cpu_by_process.sh >"$work/cpu0.txt"
  python3 bench/ws_order_entry.py 127.0.0.1 "$gp" "$duration" "$conns" "00000000-0000-4000-8000-" || true
  cpu_report
  kill $sampler 2>/dev/null || true; wait $sampler 2>/dev/null || true
  curl -s "http://127.0.0.1:$tp/internal/v1/invariants" -H 'Authorization: Bearer bench' | head -c 300; echo
  projector_report
  stop_pids
  stop_infra
fi

echo "== nginx, a small static body, same tool: wrk -t2 -c$conns -d${duration}s"
mkdir -p "$work/www"
echo '{"status":"ok"}' >"$work/www/index.json"
np=$(port)
start_nginx "$work/www" "$np"
wrk -t2 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$np/index.json" | grep -E "Requests/sec|Latency|50%|99%" || true
