#!/usr/bin/env bash
# Installs convd's build and test dependencies from Debian 12's packages (as root), then
# configures and builds a Release tree in ./build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t packages < tools/packages.txt
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
