#!/usr/bin/env bash
# start_failure.sh <convd> <close_guard.so>: convd's start-up error paths in server/http.c give
# the listening socket back exactly once (issue 12: it was closed again after MHD_stop_daemon).
# close_guard.so (LD_PRELOAD) exits 97 on a close of a descriptor that is not open.
#   1. the connection guard's thread cannot start (the shim fails that pthread_create);
#   2. a TLS certificate and key libmicrohttpd refuses (it closes the socket itself).
# Each must exit 1 with "cannot start serving" logged, never 97, and never listen.
set -euo pipefail
convd=$1
shim=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/convd-start-failure.XXXXXX")
trap 'rm -rf "$dir"' EXIT
fail=0

expect_start_failure() {
  local what=$1
  shift
  local status=0
  # timeout: a daemon that starts after all must not hang the test (it is killed at 60 s).
  env CONVD_STORE=memory LD_PRELOAD="$shim" "$@" timeout -s KILL 60 "$convd" \
    --listen 127.0.0.1:0 "${extra[@]}" 2>"$dir/log" || status=$?
  if [ "$status" != 1 ] || ! grep -q "cannot start serving" "$dir/log"; then
    echo "start_failure: $what: exit $status (want 1 with 'cannot start serving'); log:" >&2
    cat "$dir/log" >&2
    fail=1
  else
    echo "start_failure: $what: exit 1, the listening socket closed once"
  fi
}

extra=()
expect_start_failure "guard thread cannot start" CV_SHIM_FAIL_GUARD_THREAD=1

printf 'not a certificate\n' >"$dir/cert.pem"
printf 'not a key\n' >"$dir/key.pem"
extra=(--tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem")
expect_start_failure "TLS key refused"

# The shim must see a double close at all: closing a descriptor twice in a child exits 97.
status=0
LD_PRELOAD="$shim" python3 -c 'import os; fd = os.open("/dev/null", os.O_RDONLY); os.close(fd); os.close(fd)' \
  2>/dev/null || status=$?
if [ "$status" != 97 ]; then
  echo "start_failure: the close_guard shim did not catch a double close (exit $status)" >&2
  fail=1
fi
exit "$fail"
