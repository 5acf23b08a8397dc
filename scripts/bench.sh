#!/usr/bin/env bash
# `make bench`: builds in Release and runs every benchmark in bench/, appending nothing by itself;
# figures are recorded by hand in bench/RESULTS.md with the machine and command.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cmake --preset default >/dev/null
cmake --build --preset default
found=0
for b in build/default/bench/*; do
  [ -x "$b" ] || continue
  found=1
  echo "== $b"
  "$b"
done
[ $found = 1 ] || echo "bench: engine benchmarks missing (build/default/bench)"
echo "== durable order entry (bench/order_entry.sh)"
bench/order_entry.sh
echo "== ticker through the gateway vs nginx (bench/ticker.sh)"
bench/ticker.sh
