#!/usr/bin/env bash
# The fault and abuse figures (issue #9), from the integration tests that produce them, run
# against a throwaway PostgreSQL + Redis (scripts/test-infra.sh; PostgreSQL with fsync off, as in
# `make test`): standby takeover after SIGKILL of the active trading process under load (three
# runs), PostgreSQL stopped for 4 s mid-load, Redis down for 30 s, 1,000 slowloris and 10,000 idle
# connections against the gateway.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tmp=$(mktemp -d /tmp/hydrox-faults.XXXXXX)
trap 'scripts/test-infra.sh stop "$tmp" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
scripts/test-infra.sh start "$tmp" >/dev/null
export HYDROX_INFRA_ENV=$tmp/infra.env HYDROX_BIN_DIR=$root/build/default/bin HYDROX_SOURCE_DIR=$root
cd tests/integration
for run in 1 2 3; do
  python3 -m unittest test_faults.StandbyFailover 2>&1 | grep -o "takeover: .*" || echo "failover run $run failed"
done
python3 -m unittest test_faults.PostgresRestart 2>&1 | grep -o "postgres down.*" || echo "postgres restart run failed"
python3 -m unittest test_faults.RedisDown 2>&1 | grep -o "redis down.*" || echo "redis down run failed"
python3 -m unittest test_connections 2>&1 | grep -oE "(slowloris|idle): .*" || echo "connection abuse run failed"
