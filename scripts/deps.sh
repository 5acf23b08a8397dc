#!/usr/bin/env bash
# Installs the Debian packages the project needs; idempotent (skips when all are present).
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build ccache mold pkg-config clang clang-format libclang-rt-14-dev clang-16 libclang-rt-16-dev
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libpq-dev libhiredis-dev libgtest-dev libgmock-dev libbenchmark-dev
  libsodium-dev libsecp256k1-dev libcrypto++-dev libcbor-dev
  postgresql redis-server supervisor curl python3 python3-yaml python3-hypothesis
  chromium
)
# Node.js and npm (the sign-in tests' wallet libraries): Debian's, unless the machine has them.
command -v node >/dev/null || PKGS+=(nodejs)
command -v npm >/dev/null || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
echo "deps: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts these daemons on install; the project runs its own instances.
for svc in postgresql redis-server supervisor; do
  if command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then $SUDO systemctl stop "$svc" || true; fi
done
fi

# Test tooling from npm (real wallet libraries for the sign-in tests, an OpenAPI validator), pinned by package-lock.
root=$(cd "$(dirname "$0")/.." && pwd)
# Again whenever the lockfile changed since the last install (npm writes node_modules/.package-lock.json).
installed="$root/tests/integration/node_modules/.package-lock.json"
if [ ! -f "$installed" ] || [ "$root/tests/integration/package-lock.json" -nt "$installed" ]; then
  echo "deps: npm ci (tests/integration)"
  npm ci --prefix "$root/tests/integration" --no-audit --no-fund --ignore-scripts >/dev/null
fi
