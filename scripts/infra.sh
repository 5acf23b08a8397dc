#!/usr/bin/env bash
# Local PostgreSQL and Redis instances, for `make run` and for the test harness.
#   infra.sh start DIR [PG_PORT REDIS_PORT]   start both with data in DIR (free ports if 0/omitted),
#                                             write DIR/env (PGPORT, REDIS_PORT, DATABASE_URL, REDIS_URL)
#   infra.sh stop DIR                         stop both (by their pid files, never by name)
#   infra.sh stop-remove DIR                  stop both and delete DIR
# Environment: PG_FSYNC (on), PG_OPTS (more server options, e.g. "-c shared_preload_libraries=pg_stat_statements").
set -euo pipefail

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local dir=$1 pg_port=${2:-0} redis_port=${3:-0}
  [ "$pg_port" = 0 ] && pg_port=$(free_port)
  [ "$redis_port" = 0 ] && redis_port=$(free_port)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" -eq 0 ] && chmod 755 "$dir"
  : >"$dir/env"
  if [ "${SKIP_PG:-0}" != 1 ]; then start_pg "$dir" "$pg_port"; fi
  if [ "${SKIP_REDIS:-0}" != 1 ]; then start_redis "$dir" "$redis_port"; fi
}

port_busy() {
  python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)' "$1"
}

start_pg() {
  local dir=$1 pg_port=$2
  local pgdata=$dir/pg
  if [ -f "$pgdata/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
  fi
  if port_busy "$pg_port"; then
    echo "infra: port $pg_port is in use; set PG_PORT to another port or DATABASE_URL to a running server" >&2
    exit 1
  fi
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    mkdir -p "$pgdata"
    chmod 700 "$pgdata"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pgdata"
    if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -w "$pgdata"; then
      echo "infra: the postgres user cannot reach $pgdata (a parent folder is not traversable)." >&2
      echo "infra: move the checkout, or set DATABASE_URL to an existing server." >&2
      exit 1
    fi
    as_pg "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pgdata -c max_connections=400 -c fsync=${PG_FSYNC:-on} ${PG_OPTS:-}" \
    start >/dev/null || { tail -20 "$pgdata/server.log" >&2; exit 1; }
  psql -h 127.0.0.1 -p "$pg_port" -U postgres -qtAc "SELECT 1 FROM pg_roles WHERE rolname='hydrox'" | grep -q 1 \
    || psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE ROLE hydrox LOGIN PASSWORD 'hydrox' CREATEDB"
  psql -h 127.0.0.1 -p "$pg_port" -U postgres -qtAc "SELECT 1 FROM pg_database WHERE datname='hydrox'" | grep -q 1 \
    || psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE hydrox OWNER hydrox"
  cat >>"$dir/env" <<ENV
PGHOST=127.0.0.1
PGPORT=$pg_port
DATABASE_URL=postgres://hydrox:hydrox@127.0.0.1:$pg_port/hydrox?sslmode=disable
ENV
}

start_redis() {
  local dir=$1 redis_port=$2
  if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; sleep 0.2; fi
  if port_busy "$redis_port"; then
    echo "infra: port $redis_port is in use; set REDIS_PORT to another port or REDIS_URL to a running server" >&2
    exit 1
  fi
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
  for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  redis-cli -p "$redis_port" ping >/dev/null
  cat >>"$dir/env" <<ENV
REDIS_PORT=$redis_port
REDIS_URL=127.0.0.1:$redis_port
ENV
}

stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  if [ -f "$dir/redis.pid" ]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    rm -f "$dir/redis.pid"
  fi
  if [ -f "$dir/pg/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

case "${1:-}" in
  start) start "$2" "${3:-0}" "${4:-0}" ;;
  stop) stop "$2" ;;
  stop-remove) stop "$2"; rm -rf "$2" ;;
  *) echo "usage: $0 start|stop|stop-remove DIR [PG_PORT REDIS_PORT]" >&2; exit 2 ;;
esac
