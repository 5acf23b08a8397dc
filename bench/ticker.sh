#!/usr/bin/env bash
# GET /api/v1/markets/{symbol}/ticker through the gateway, and nginx serving the same body as a
# static file, with the same load tool in the same run (issue #5).
#   bench/ticker.sh [DURATION_S] [CONNECTIONS]
. "$(dirname "$0")/lib.sh"
duration=${1:-15}
conns=${2:-64}
start_infra
tp=$(port); mp=$(port); gp=$(port); np=$(port)
PORT=$tp MARK_FROM_INDEX=0 LOG_LEVEL=warn "$bin/hydrox-trading" 2>"$work/trading.log" & pids+=($!)
PORT=$mp TRADING_SERVICE_URL=http://127.0.0.1:$tp INDEX_FEED=none LOG_LEVEL=warn "$bin/hydrox-market" 2>"$work/market.log" & pids+=($!)
PORT=$gp HTTP_THREADS=${GATEWAY_THREADS:-2} MARKET_SERVICE_URL=http://127.0.0.1:$mp RATE_LIMIT_IP_BURST=0 RATE_LIMIT_USER_BURST=0 LOG_LEVEL=error "$bin/hydrox-gateway" 2>"$work/gateway.log" & pids+=($!)
url="http://127.0.0.1:$gp/api/v1/markets/BTC_USDM_PERP/ticker"
for _ in $(seq 1 100); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
echo "== ticker through the gateway: wrk -t2 -c$conns -d${duration}s"
wrk -t2 -c"$conns" -d"${duration}s" --latency "$url" | grep -E "Requests/sec|Latency|50%|99%|Non-2xx" || true
mkdir -p "$work/www"
curl -s "$url" >"$work/www/ticker.json"
start_nginx "$work/www" "$np"
echo "== nginx, the same body ($(wc -c <"$work/www/ticker.json") bytes) as a static file: wrk -t2 -c$conns -d${duration}s"
wrk -t2 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$np/ticker.json" | grep -E "Requests/sec|Latency|50%|99%" || true
