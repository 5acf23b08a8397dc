#!/usr/bin/env bash
# libFuzzer targets (fuzz/): build with clang, then fuzz each for SECONDS.
#   scripts/fuzz.sh [SECONDS] [target ...]   short run on a scratch copy of the committed corpus
#                                            (what `make test` does; any crash fails)
#   FUZZ_KEEP=1 scripts/fuzz.sh 600 ...      long run that grows fuzz/corpus/<target>, then
#                                            minimizes it (-merge=1) for committing
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(decimal json order ws siwe cardano engine)
build=build/fuzz
# clang 16: the engine uses C++20 parenthesized aggregate initialization, which clang 14 lacks.
if [ ! -f "$build/build.ninja" ] || ! grep -q 'clang++-16' "$build/CMakeCache.txt" 2>/dev/null; then
  rm -rf "$build"
  CCACHE_SLOPPINESS=time_macros cmake -S fuzz -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++-16 \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
fi
cmake --build "$build" -j2 >/dev/null
status=0
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  work=$(mktemp -d)
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    cp -r "$corpus"/. "$work"/
  else
    cp -r "$corpus"/. "$work"/
  fi
  echo "fuzz: $t for ${seconds}s"
  if ! "$build/fuzz_$t" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$work/" -print_final_stats=1 "$work" >"$work/log" 2>&1; then
    echo "fuzz: $t FAILED"; tail -40 "$work/log"; ls "$work" | grep -E '^(crash|leak|timeout|oom)-' || true
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$work/log" | sed "s/^/  /"
  fi
  if [ "${FUZZ_KEEP:-0}" = 1 ] && [ $status -eq 0 ]; then
    merged=$(mktemp -d)
    "$build/fuzz_$t" -merge=1 "$merged" "$work" "$corpus" >/dev/null 2>&1
    rm -rf "$corpus" && mkdir -p "$corpus" && cp -r "$merged"/. "$corpus"/
    echo "  corpus: $(ls "$corpus" | wc -l) files"
    rm -rf "$merged"
  fi
  rm -rf "$work"
done
exit $status
