#!/usr/bin/env bash
# GET /api/v1/markets/{symbol}/ticker through the gateway, and nginx serving the same body as a
# static file, with the same load tool in the same run (issue #5).
#   bench/ticker.sh [DURATION_S] [CONNECTIONS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${1:-15}
conns=${2:-64}
bin=$root/build/default/bin
for p in wrk nginx-light; do
  dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "ok installed" || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $p >/dev/null
done
work=$(mktemp -d /tmp/hydrox-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  scripts/infra.sh stop-remove "$work/infra" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/infra.sh start "$work/infra" >/dev/null
set -a; . "$work/infra/env"; set +a
"$bin/hydrox-migrate" db/migrations >/dev/null 2>&1
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tp=$(port); mp=$(port); gp=$(port); np=$(port)
PORT=$tp MARK_FROM_INDEX=0 LOG_LEVEL=warn "$bin/hydrox-trading" 2>"$work/trading.log" & pids+=($!)
PORT=$mp TRADING_SERVICE_URL=http://127.0.0.1:$tp INDEX_FEED=none LOG_LEVEL=warn "$bin/hydrox-market" 2>"$work/market.log" & pids+=($!)
PORT=$gp MARKET_SERVICE_URL=http://127.0.0.1:$mp RATE_LIMIT_IP_BURST=0 RATE_LIMIT_USER_BURST=0 LOG_LEVEL=error "$bin/hydrox-gateway" 2>"$work/gateway.log" & pids+=($!)
url="http://127.0.0.1:$gp/api/v1/markets/BTC_USDM_PERP/ticker"
for _ in $(seq 1 100); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
echo "== ticker through the gateway: wrk -t2 -c$conns -d${duration}s"
wrk -t2 -c"$conns" -d"${duration}s" --latency "$url" | grep -E "Requests/sec|Latency|50%|99%|Non-2xx" || true
mkdir -p "$work/www"
curl -s "$url" >"$work/www/ticker.json"
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$np; root $work/www; location / { default_type application/json; } }
}
CONF
nginx -c "$work/nginx.conf"
sleep 0.3
echo "== nginx, the same body ($(wc -c <"$work/www/ticker.json") bytes) as a static file: wrk -t2 -c$conns -d${duration}s"
wrk -t2 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$np/ticker.json" | grep -E "Requests/sec|Latency|50%|99%" || true
