#!/usr/bin/env bash
# WebSocket fan-out (issue #5): CONNECTIONS clients through the gateway, each subscribed to the
# ticker and the trades of BTC_USDM_PERP, while a generator makes TRADES_PER_S trades (two crossing
# orders each, straight to trading). hydrox-ws-load counts deliveries over DURATION_S and the delay
# from each trade's engine time to its receipt. Everything on this machine.
# GATEWAYS (default 2) gateway processes share the clients, one load client (one thread) each. A
# handed-off client costs a gateway no socket once handed off; a tunnelled one (HANDOFF=0) costs it
# two, and this VM's hard limit of 20,000 open files per process caps one gateway at about 9,990.
# The gateway hands each client's socket to market (HANDOFF_SOCKET, as `make run` does); HANDOFF=0
# makes it copy the bytes both ways instead (the tunnel, used when market runs on another host).
# DIRECT=1 connects the load clients to market's hub instead (no gateway at all).
# SWEEP=k (default 1): each taker order meets k resting orders, so trades come k at a time (one
# engine batch, one write per client for the k messages) at the same TRADES_PER_S.
#   bench/ws_fanout.sh [CONNECTIONS] [DURATION_S] [TRADES_PER_S]
. "$(dirname "$0")/lib.sh"
conns=${1:-10000}
duration=${2:-20}
rate=${3:-100}
ulimit -n "$(ulimit -Hn)"  # market and the load client hold a socket per client (a tunnelling gateway two)
start_infra
gateways=${GATEWAYS:-2}
tp=$(port); mp=$(port)
PORT=$tp OPERATOR_TOKEN=bench MARK_FROM_INDEX=0 LOG_LEVEL=warn "$bin/hydrox-trading" 2>"$work/trading.log" & pids+=($!)
handoff=
[ "${HANDOFF:-1}" = 1 ] && handoff=$work/market-ws.sock
PORT=$mp TRADING_SERVICE_URL=http://127.0.0.1:$tp INDEX_FEED=none HANDOFF_SOCKET=$handoff WS_MAX_CONNECTIONS_PER_IP=10000000 LOG_LEVEL=warn "$bin/hydrox-market" 2>"$work/market.log" & pids+=($!)
gps=(); declare -A ops
for g in $(seq 1 "$gateways"); do
  gp=$(port); gps+=("$gp"); ops[$gp]=$(port)
  OPS_PORT=${ops[$gp]} WS_UPGRADES_PER_IP_PER_MIN=100000000 PORT=$gp MARKET_SERVICE_URL=http://127.0.0.1:$mp MARKET_WS_HANDOFF_SOCKET=$handoff TRADING_SERVICE_URL=http://127.0.0.1:$tp RATE_LIMIT_IP_BURST=0 RATE_LIMIT_USER_BURST=0 LOG_LEVEL=error "$bin/hydrox-gateway" 2>"$work/gateway-$g.log" & pids+=($!)
done
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$mp/health" >/dev/null && curl -sf "http://127.0.0.1:$tp/health" >/dev/null && break; sleep 0.1; done
curl -sf -XPOST "http://127.0.0.1:$tp/internal/v1/marks" -H 'Authorization: Bearer bench' -d '{"symbol":"BTC_USDM_PERP","mark_price":"97000"}' >/dev/null
python3 - "$tp" "$rate" "$((duration + 10))" "$work" "$gateways" "${SWEEP:-1}" >"$work/trades.log" 2>&1 <<'PY' &
import glob, http.client, json, sys, time
port, rate, seconds, work, gateways = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
sweep = int(sys.argv[6])
c = http.client.HTTPConnection("127.0.0.1", port)
def call(method, path, body, headers):
    c.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
    r = c.getresponse(); r.read(); return r.status
users = ["00000000-0000-4000-8000-00000000fa01", "00000000-0000-4000-8000-00000000fa02"]
for i, u in enumerate(users):
    assert call("POST", "/internal/v1/deposits", {"user_id": u, "amount": "10000000", "idempotency_key": f"fan-{i}"},
                {"Authorization": "Bearer bench"}) == 200
while len(glob.glob(f"{work}/ready-*")) < gateways:  # every client connected
    time.sleep(0.1)
start, n = time.monotonic(), 0
while time.monotonic() - start < seconds:
    maker, taker = (users[0], users[1]) if n % 2 == 0 else (users[1], users[0])
    for _ in range(sweep):
        call("POST", "/api/v1/orders", {"symbol": "BTC_USDM_PERP", "type": "Limit", "side": "Sell", "price": "97000", "amount": "0.001"}, {"X-User-ID": maker})
    call("POST", "/api/v1/orders", {"symbol": "BTC_USDM_PERP", "type": "Limit", "side": "Buy", "price": "97000", "amount": f"{0.001 * sweep:.3f}"}, {"X-User-ID": taker})
    n += 1
    time.sleep(max(0.0, start + n * sweep / rate - time.monotonic()))
PY
pids+=($!)
echo "== fan-out: $conns WebSocket clients through $gateways gateway process(es) (HANDOFF=${HANDOFF:-1} DIRECT=${DIRECT:-0} SWEEP=${SWEEP:-1}) (ticker.BTC_USDM_PERP, trade.BTC_USDM_PERP), $rate trades/s, ${duration}s"
loads=()
for gp in "${gps[@]}"; do
  target=$gp
  [ "${DIRECT:-0}" = 1 ] && target=$mp
  READY_FILE="$work/ready-$gp" "$bin/hydrox-ws-load" 127.0.0.1 "$target" "$((conns / gateways))" "$duration" "ticker.BTC_USDM_PERP,trade.BTC_USDM_PERP" "${LOAD_THREADS:-1}" >"$work/load-$gp.txt" &
  loads+=($!)
done
for l in "${loads[@]}"; do wait "$l" || true; done
cat "$work"/load-*.txt
# Sums over the load clients (latency percentiles are per client: the worst is shown).
python3 - "$work"/load-*.txt <<'PY'
import sys
rows = [dict(kv.split("=") for kv in open(f).read().split()) for f in sys.argv[1:]]
total = lambda k: sum(float(r[k]) for r in rows)
print(f"total: opened {total('opened'):.0f} of {total('connections'):.0f}, lost {total('lost'):.0f}, "
      f"deliveries/s {total('deliveries_per_s'):.0f}, trade deliveries {total('trade_deliveries'):.0f}, "
      f"trade latency p50 {max(int(r['trade_latency_ms_p50']) for r in rows)} ms, "
      f"p99 {max(int(r['p99']) for r in rows)} ms (worst client)")
PY
echo "trades made: $(curl -s "http://127.0.0.1:$mp/api/v1/markets/BTC_USDM_PERP/trades?limit=1" | head -c 200)"
for gp in "${gps[@]}"; do
  echo "gateway $gp: $(curl -s "http://127.0.0.1:${ops[$gp]}/metrics" | grep '^http_tunnel_handoffs_total' | tr '\n' ' ')"
done
# Frames per write in market: how many messages each send to a client carried on average.
curl -s "http://127.0.0.1:$mp/metrics" | awk '/^ws_frames_sent_total/ {f=$2} /^ws_writes_total/ {w=$2} END {if (w > 0) printf "market: %d frames in %d writes (%.2f frames per write)\n", f, w, f / w}'
