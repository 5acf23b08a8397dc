# Shared set-up of the load scripts in bench/: sourced, not run.
# Provides: root, bin ($HYDROX_BIN_DIR, else build/default/bin: set it to compare two builds),
# work (a temporary folder), port(), start_infra, start_nginx FILE_DIR PORT, and a cleanup trap
# that stops every process in `pids`, nginx and the databases.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bin=${HYDROX_BIN_DIR:-$root/build/default/bin}
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
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# ports N: N distinct free ports on one line (held open together while chosen, so none repeats).
ports() {
  python3 -c 'import socket,sys; ss=[socket.socket() for _ in range(int(sys.argv[1]))]; [s.bind(("127.0.0.1",0)) for s in ss]; print(*[s.getsockname()[1] for s in ss])' "$1"
}
# start_infra [BIN_DIR] [MIGRATIONS_DIR]: fresh PostgreSQL and Redis, migrated by that build.
start_infra() {
  scripts/infra.sh start "$work/infra" >/dev/null
  set -a; . "$work/infra/env"; set +a
  "${1:-$bin}/hydrox-migrate" "${2:-db/migrations}" >/dev/null 2>&1
}
stop_infra() { scripts/infra.sh stop-remove "$work/infra" >/dev/null 2>&1 || true; }
# Stops every process in `pids` (SIGTERM, then waits) and forgets them.
stop_pids() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
# nginx (one worker, keep-alive without a request cap) serving the files of a folder.
start_nginx() {
  cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$2; root $1; location / { default_type application/json; } }
}
CONF
  nginx -c "$work/nginx.conf"
  sleep 0.3
}
