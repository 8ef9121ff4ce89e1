#!/usr/bin/env bash
# Builds convd and runs its tests. README's second command; CI (.ci/run) runs every step.
#
# CONVD_TEST_STEPS picks the steps (space- or comma-separated; default "release"):
#   release  Release build (tools/setup.sh) and the whole ctest suite
#   fuzz     clang + libFuzzer + ASan/UBSan build; each target replays its checked-in corpus,
#            then a fixed-seed mutation run (CONVD_FUZZ_RUNS inputs, default 200000). Deterministic.
#            CONVD_FUZZ_SECONDS=N runs an N-second random campaign per target instead.
#   asan     ASan + UBSan (no recovery, LeakSanitizer on) build; the whole ctest suite
#   tsan     TSan build (OMP_NUM_THREADS=1); the daemon's concurrency tests
#   load     tests/load against the Release daemon: bounded loopback load (wrk), fault cases and
#            10,000 held connections (CONVD_LOAD_SECONDS=30 CONVD_LOAD_CONNS=256 for the full run)
#   all      every step above, in that order
# Each step's wall time is printed at the end. Build trees: build (release), build-fuzz,
# build-asan, build-tsan. Test-only packages (tools/test-packages.txt) are installed when
# missing and the script runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${CONVD_TEST_STEPS:-release}
steps=${steps//,/ }
[ "$steps" = all ] && steps="release fuzz asan tsan load"
jobs=${CONVD_JOBS:-$(nproc)}
# Sanitized code runs several times slower: check's per-test timeouts scale with this.
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-1}
times=()

install_test_packages() {
  # The test tools (tools/test-packages.txt: check, libcurl, clang, Chromium, PostgreSQL, ...).
  if [ "$(id -u)" = 0 ]; then
    tools/setup.sh --install-only tools/test-packages.txt
  else
    echo "test.sh: not root: test packages not checked (tools/test-packages.txt)" >&2
  fi
}

configure() { # dir, cmake args...
  local dir=$1
  shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
}

step_release() {
  tools/setup.sh
  ctest --test-dir build --output-on-failure --timeout 600
}

step_fuzz() {
  configure build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCV_FUZZ=ON \
    -DCV_BUILD_TESTS=OFF
  ctest --test-dir build-fuzz --output-on-failure -L fuzz -j"$jobs"
}

step_asan() {
  configure build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCV_SANITIZE=address,undefined
  CK_TIMEOUT_MULTIPLIER=10 \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/sanitize/lsan.supp \
    ctest --test-dir build-asan --output-on-failure --timeout 3000 -E 'format|layering|bench_smoke'
}

step_tsan() {
  configure build-tsan -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCV_SANITIZE=thread
  CK_TIMEOUT_MULTIPLIER=10 OMP_NUM_THREADS=1 \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1 suppressions=$PWD/tests/sanitize/tsan.supp" \
    ctest --test-dir build-tsan --output-on-failure --timeout 3000 -R 'integration_http'
}

step_load() {
  [ -x build/server/convd ] || tools/setup.sh
  # wrk drives the /corr2d phase (tools/test-packages.txt): missing, the step fails.
  CONVD_LOAD_REQUIRE_WRK=1 python3 tests/load/load.py build/server/convd
}

install_test_packages
for s in $steps; do
  case $s in release | fuzz | asan | tsan | load) ;; *)
    echo "test.sh: unknown step '$s' (release fuzz asan tsan load all)" >&2
    exit 2
    ;;
  esac
  t0=$(date +%s)
  echo "== test.sh: step $s" >&2
  "step_$s"
  times+=("$s $(($(date +%s) - t0))s")
done
echo "== test.sh: passed: ${times[*]}" >&2
