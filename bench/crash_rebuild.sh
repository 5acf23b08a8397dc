#!/usr/bin/env bash
# Issue 22's crash check: trading killed with SIGKILL under order load KILL_ROUNDS times (10 by
# default), restarted each time; after every restart each acknowledged order is in the read
# tables (recovery projects from the watermark before answering), and at the end every read table
# equals, row for row, the same tables rebuilt from the journal alone. The load is the test
# suite's Python clients (KILL_CLIENTS threads, 16 by default): what they reach, not the HTTP
# benchmark's rate (bench/order_entry.sh).
#   bench/crash_rebuild.sh [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${HYDROX_BUILD_DIR:-$root/build/default}
"$root/scripts/test-infra.sh" start "$build" >/dev/null
trap '"$root/scripts/test-infra.sh" stop "$build" >/dev/null 2>&1 || true' EXIT
cd "$root/tests/integration"
KILL_ROUNDS=${1:-10} KILL_CLIENTS=${KILL_CLIENTS:-16} HYDROX_BIN_DIR=$build/bin HYDROX_INFRA_ENV=$build/infra.env \
  HYDROX_SOURCE_DIR=$root /usr/bin/python3 -m unittest -v \
  test_trading_crash.ProjectorRebuild.test_read_tables_equal_a_rebuild_from_the_journal_after_kills
