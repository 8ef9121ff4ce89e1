#!/usr/bin/env bash
# Formatting is the tool's job: every C file must be as clang-format (.clang-format) leaves it.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v clang-format >/dev/null || { echo "clang-format missing (tools/setup.sh installs it)"; exit 1; }
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find compute api server tests bench -name '*.[ch]')
clang-format --dry-run -Werror "${files[@]}"
echo "format ok (${#files[@]} files)"
