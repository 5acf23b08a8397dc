#!/usr/bin/env bash
# Every figure of bench/RESULTS.md, in one run (`make bench`): the engine streams, memory and the
# liquidation check (Google Benchmark), durable order entry (HTTP and WebSocket) vs nginx, kills
# with a rebuild of the read tables, the ticker GET vs nginx, the
# WebSocket fan-out, recovery with 1,000,000 open orders, and the fault/abuse figures. Prints the
# machine and the date first; takes about 20 minutes on the 2-vCPU VM.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/deps.sh
cmake --preset default >/dev/null
cmake --build --preset default
echo "== $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB, $(. /etc/os-release; echo "$PRETTY_NAME")"
echo "== engine: build/default/bench/engine_bench"
build/default/bench/engine_bench
echo "== durable order entry over HTTP and WebSocket vs nginx: bench/order_entry.sh 15 64"
bench/order_entry.sh 15 64
echo "== kill -9 under load, 10 times, then the read tables rebuilt from the journal: bench/crash_rebuild.sh 10"
bench/crash_rebuild.sh 10
echo "== ticker through the gateway vs nginx: bench/ticker.sh 15 64"
bench/ticker.sh 15 64
echo "== WebSocket fan-out: bench/ws_fanout.sh 10000 15 3 (sustained) and 10000 15 50 (the target's rate)"
bench/ws_fanout.sh 10000 15 3
bench/ws_fanout.sh 10000 15 50
echo "== recovery with 1,000,000 open orders: bench/recovery.sh"
bench/recovery.sh 1000000
echo "== faults and abuse: bench/faults.sh"
bench/faults.sh
