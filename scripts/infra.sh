#!/usr/bin/env bash
# Local PostgreSQL and Redis instances, for `make run` and for the test harness.
#   infra.sh start DIR [PG_PORT REDIS_PORT]   start both with data in DIR (free ports if 0/omitted),
#                                             write DIR/env (PGPORT, REDIS_PORT, DATABASE_URL, REDIS_URL)
#   infra.sh stop DIR                         stop both (by their pid files, never by name)
#   infra.sh stop-remove DIR                  stop both and delete DIR
# Environment: PG_FSYNC (on), PG_OPTS (more server options, e.g. "-c shared_preload_libraries=pg_stat_statements"),
#   PG_SUPERUSER_PASSWORD / PG_APP_PASSWORD / REDIS_PASSWORD (default: generated once per DIR, mode 0600).
# Both servers require a password on TCP (PostgreSQL scram-sha-256, Redis requirepass); DIR/env has
# them (PGPASSWORD for the superuser, the hydrox role's in DATABASE_URL, REDIS_URL with the password).
set -euo pipefail

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

secret() {  # secret FILE: a random password, created once (mode 0600)
  if [ ! -s "$1" ]; then (umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1"); fi
  cat "$1"
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
  local su_pw app_pw
  su_pw=${PG_SUPERUSER_PASSWORD:-$(secret "$dir/pg-superuser-password")}
  app_pw=${PG_APP_PASSWORD:-$(secret "$dir/pg-app-password")}
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    mkdir -p "$pgdata"
    chmod 700 "$pgdata"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pgdata"
    if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -w "$pgdata"; then
      echo "infra: the postgres user cannot reach $pgdata (a parent folder is not traversable)." >&2
      echo "infra: move the checkout, or set DATABASE_URL to an existing server." >&2
      exit 1
    fi
    as_pg "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth-local=trust --auth-host=scram-sha-256 --no-sync -E UTF8 \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  # Passwords on TCP, whatever an older data folder said; the Unix socket (in the data folder,
  # mode 0700, the server's user only) stays trusted for the administration below.
  cat >"$pgdata/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
HBA
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pgdata/pg_hba.conf"
  chmod 600 "$pgdata/pg_hba.conf"
  as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pgdata -c max_connections=400 -c fsync=${PG_FSYNC:-on} ${PG_OPTS:-}" \
    start >/dev/null || { tail -20 "$pgdata/server.log" >&2; exit 1; }
  local admin=(as_pg psql -h "$pgdata" -p "$pg_port" -U postgres -v ON_ERROR_STOP=1)
  "${admin[@]}" -qc "ALTER ROLE postgres PASSWORD '$su_pw'" >/dev/null
  if "${admin[@]}" -qtAc "SELECT 1 FROM pg_roles WHERE rolname='hydrox'" | grep -q 1; then
    "${admin[@]}" -qc "ALTER ROLE hydrox PASSWORD '$app_pw'" >/dev/null
  else
    "${admin[@]}" -qc "CREATE ROLE hydrox LOGIN PASSWORD '$app_pw' CREATEDB" >/dev/null
  fi
  "${admin[@]}" -qtAc "SELECT 1 FROM pg_database WHERE datname='hydrox'" | grep -q 1 \
    || "${admin[@]}" -qc "CREATE DATABASE hydrox OWNER hydrox" >/dev/null
  cat >>"$dir/env" <<ENV
PGHOST=127.0.0.1
PGPORT=$pg_port
PGPASSWORD=$su_pw
PG_APP_PASSWORD=$app_pw
DATABASE_URL=postgres://hydrox:$app_pw@127.0.0.1:$pg_port/hydrox?sslmode=disable
ENV
  chmod 600 "$dir/env"
}

start_redis() {
  local dir=$1 redis_port=$2
  if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; sleep 0.2; fi
  if port_busy "$redis_port"; then
    echo "infra: port $redis_port is in use; set REDIS_PORT to another port or REDIS_URL to a running server" >&2
    exit 1
  fi
  local pw
  pw=${REDIS_PASSWORD:-$(secret "$dir/redis-password")}
  # The password through a config on stdin, not the command line (ps would show it).
  printf 'bind 127.0.0.1\nport %s\nsave ""\nappendonly no\ndaemonize yes\npidfile %s\nlogfile %s\ndir %s\nrequirepass %s\n' \
    "$redis_port" "$dir/redis.pid" "$dir/redis.log" "$dir" "$pw" | redis-server -
  for _ in $(seq 1 100); do
    REDISCLI_AUTH=$pw redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  REDISCLI_AUTH=$pw redis-cli -p "$redis_port" ping >/dev/null
  cat >>"$dir/env" <<ENV
REDIS_PORT=$redis_port
REDIS_PASSWORD=$pw
REDIS_URL=redis://:$pw@127.0.0.1:$redis_port
ENV
  chmod 600 "$dir/env"
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
