#!/usr/bin/env bash
# ctest bench_smoke: convd-bench runs once on tiny shapes and prints one JSON line with the
# documented keys. Timings are never checked.
set -euo pipefail
bench=${1:?usage: smoke.sh path/to/convd-bench}

check() { # keys... < one JSON line
  local line
  line=$(cat)
  [ "$(printf '%s\n' "$line" | wc -l)" -eq 1 ] || { echo "not one line: $line"; exit 1; }
  if command -v python3 >/dev/null; then
    printf '%s' "$line" | python3 -c 'import json, sys
d = json.load(sys.stdin)
missing = [k for k in sys.argv[1:] if k not in d]
assert not missing, "missing keys %s in %s" % (missing, d)' "$@"
  else
    for k in "$@"; do
      printf '%s' "$line" | grep -q "\"$k\":" || { echo "missing key $k in $line"; exit 1; }
    done
  fi
  echo "ok: $line"
}

"$bench" corr2d --input 1,1,16,16 --kernel 1,1,3,3 --padding 1 --threads 1 --mode fwd \
  --repeats 2 --json | check bench impl isa input kernel padding threads mode repeats \
  median_ms min_ms max_ms gflops check
"$bench" corr2d --input 1,3,8,8 --kernel 2,3,3,3 --padding 1 --threads 1 --mode bwdk \
  --repeats 1 --json | check mode median_ms check
"$bench" corr2d --input 1,2,9,11 --kernel 3,2,2,3 --threads 2 --mode fwd+bwd --impl naive \
  --repeats 1 --json | check median_ms min_ms max_ms gflops
"$bench" train --input 1,1,12,12 --kernel 1,1,3,3 --bias --steps 3 --threads 1 --json |
  check bench threads steps ms_per_step median_ms
"$bench" peak --threads 1 --json | check bench isa threads gflops
"$bench" accuracy --input 1,16,9,12 --kernel 16,16,3,3 --padding 1 |
  check bench isa fwd_max_scaled dx_max_scaled dk_max_scaled
# Bad arguments are refused with status 2.
if "$bench" corr2d --input 1,1,4 --kernel 1,1,3,3 2>/dev/null; then
  echo "accepted a bad --input"; exit 1
fi
echo "bench smoke ok"
