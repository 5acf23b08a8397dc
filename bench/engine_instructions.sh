#!/usr/bin/env bash
# Instructions the engine executes per order on the add-only stream (issue #3), counted by
# callgrind inside Engine::apply only: deterministic, where this VM's timings of the same binary
# vary by ±40 % from run to run. For comparing engine changes, not a throughput figure.
#   bench/engine_instructions.sh        (the first 300,000 orders of the add-only stream)
set -euo pipefail
cd "$(dirname "$0")/.."
dpkg-query -W -f='${Status}' valgrind 2>/dev/null | grep -q "ok installed" || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
cmake --build --preset default --target engine_bench >/dev/null
out=$(mktemp /tmp/hydrox-callgrind.XXXXXX)
valgrind --tool=callgrind --callgrind-out-file="$out" \
  --toggle-collect='hydrox::engine::BasicEngine<hydrox::engine::FastBook>::apply*' \
  build/default/bench/engine_bench --benchmark_filter='BM_AddOnlyStream/300000' >/dev/null 2>"$out.log"
total=$(grep -E "^summary:|^totals:" "$out" | head -1 | awk '{print $2}')
echo "engine instructions, add-only stream, 300,000 orders: $total ($((total / 300000)) per order)"
callgrind_annotate "$out" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n 3,17p | cut -c1-160
rm -f "$out" "$out.log"
