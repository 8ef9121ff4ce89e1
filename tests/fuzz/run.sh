#!/usr/bin/env bash
# Runs one libFuzzer target: run.sh <target binary> <checked-in corpus dir>.
# Default (CI): replays every corpus file, then a fixed-seed mutation run of CONVD_FUZZ_RUNS
# inputs (default 200000, ~10 s a target), so the outcome is the same on every run. CONVD_FUZZ_SECONDS=N instead
# runs a random campaign for N seconds (for developers; its findings are not a CI gate).
# New inputs and crash files go to a fresh temporary directory, never into the source tree;
# a crash's file is kept and its path printed (copy it into the corpus and add a unit test).
set -euo pipefail
bin=$1
corpus=$2
name=$(basename "$bin")
work=$(mktemp -d "${TMPDIR:-/tmp}/convd-fuzz-$name.XXXXXX")
keep=0
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/new" "$work/crash"
common=(-rss_limit_mb=2048 -max_len=4096 -timeout=60 -print_final_stats=1 -artifact_prefix="$work/crash/")
# fuzz_log's target writes log lines to stderr: close it for the target, keep libFuzzer's and
# the sanitizers' reports (libFuzzer moves them to a duplicate of stderr).
[ "$name" = fuzz_log ] && common+=(-close_fd_mask=2)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
status=0
if [ -n "${CONVD_FUZZ_SECONDS:-}" ]; then
  "$bin" "${common[@]}" -max_total_time="$CONVD_FUZZ_SECONDS" "$work/new" "$corpus" || status=$?
else
  # Replay: every checked-in input once (-runs=0 with directories runs each file).
  "$bin" "${common[@]}" -runs=0 "$corpus" || status=$?
  if [ "$status" = 0 ]; then
    "$bin" "${common[@]}" -seed=1 -runs="${CONVD_FUZZ_RUNS:-200000}" "$work/new" "$corpus" || status=$?
  fi
fi
if [ "$status" != 0 ]; then
  keep=1
  echo "fuzz $name: FAILED (exit $status); inputs kept in $work/crash:" >&2
  ls -l "$work/crash" >&2 || true
fi
exit "$status"
