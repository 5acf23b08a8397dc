#!/usr/bin/env bash
# `make stop`: stops a stack started by `make run` (supervisord and its services, then the local
# PostgreSQL and Redis), by pid files only.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run_dir=$root/.run
quiet=0; [ "${1:-}" = --quiet ] && quiet=1

if [ -f "$run_dir/supervisord.pid" ]; then
  pid=$(cat "$run_dir/supervisord.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    [ $quiet = 1 ] || echo "stop: services stopped"
  fi
  rm -f "$run_dir/supervisord.pid"
fi
if [ -d "$run_dir/infra" ]; then
  "$root/scripts/infra.sh" stop "$run_dir/infra"
  [ $quiet = 1 ] || echo "stop: PostgreSQL and Redis stopped (data kept in $run_dir/infra)"
fi
exit 0
