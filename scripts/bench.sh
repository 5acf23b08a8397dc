#!/usr/bin/env bash
# `make bench`: every benchmark (bench/run_all.sh); figures are recorded by hand in
# bench/RESULTS.md with the machine, command and date.
exec "$(cd "$(dirname "$0")/.." && pwd)/bench/run_all.sh" "$@"
