#!/usr/bin/env bash
# Builds convd (installing dependencies if needed) and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
ctest --test-dir build --output-on-failure --timeout 600
