#!/usr/bin/env bash
# Installs the test tools (tools/test-packages.txt: check, libcurl, clang-format, Chromium,
# Python with numpy/Pillow/tqdm/torch, ...), builds convd with its tests and runs every test
# with ctest. As root on Debian 12 (apt-get); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh --install-only tools/test-packages.txt
tools/setup.sh
ctest --test-dir build --output-on-failure --timeout 600
