#!/usr/bin/env bash
# CTest fixture: PostgreSQL and Redis on free ports for the integration tests.
#   test-infra.sh start BUILD_DIR   creates a folder under /tmp (reachable by the postgres user),
#                                   starts both, and links BUILD_DIR/infra.env to its env file
#   test-infra.sh stop BUILD_DIR    stops both and removes the folder
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$2
case "$1" in
  start)
    if [ -f "$build/infra.dir" ]; then "$here/infra.sh" stop-remove "$(cat "$build/infra.dir")"; fi
    dir=$(mktemp -d /tmp/hydrox-test.XXXXXX)
    echo "$dir" >"$build/infra.dir"
    # fsync off: tests measure behaviour, not durability of this throwaway cluster.
    PG_FSYNC=off "$here/infra.sh" start "$dir"
    cp "$dir/env" "$build/infra.env"
    echo "test infra up: $(tr '\n' ' ' <"$dir/env")"
    ;;
  stop)
    if [ -f "$build/infra.dir" ]; then
      "$here/infra.sh" stop-remove "$(cat "$build/infra.dir")"
      rm -f "$build/infra.dir" "$build/infra.env"
    fi
    ;;
  *) echo "usage: $0 start|stop BUILD_DIR" >&2; exit 2 ;;
esac
