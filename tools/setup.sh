#!/usr/bin/env bash
# Installs what building and running convd needs (tools/packages.txt, Debian 12 packages, as root),
# then configures and builds a Release tree in ./build. Safe to run again. The test tools
# (tools/test-packages.txt) are installed by tools/test.sh, not here; when they are present the
# build includes the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# Installs the packages listed in file $1 that are missing.
install_list() {
  local missing=()
  mapfile -t wanted < "$1"
  for p in "${wanted[@]}"; do
    [ -n "$p" ] || continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}
if [ "${1:-}" = "--install-only" ]; then
  install_list "${2:-tools/packages.txt}"
  exit 0
fi
install_list tools/packages.txt
tests=OFF
if pkg-config --exists check && pkg-config --exists libcurl; then
  tests=ON
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCV_BUILD_TESTS="$tests" >/dev/null
cmake --build build -j"$(nproc)"
