#!/usr/bin/env bash
# Runs issue 6's table for convd (fast kernels and the naive loop) and PyTorch side by side, in
# one run on this machine, and writes bench/RESULTS.md (bench/report.py renders it).
#
#   bench/compare.sh [path/to/convd-bench]     (default: build/bench/convd-bench)
#   THREADS=2 ROUNDS=5 OUT=bench/RESULTS.md bench/compare.sh
#
# For each case the implementations run back to back, ROUNDS times in turn, so a burst of load
# from elsewhere hits all of them; the report keeps each implementation's best round (its
# median over the repeats of that round), and the raw JSON lines stay in RESULTS.jsonl.
# PyTorch runs twice: as is ("torch": it allocates each
# output, and glibc often serves a large one with a fresh mmap that page-faults during the
# call) and with glibc told to keep outputs on the heap ("torch-warm": the arithmetic alone).
# Takes about four and a half minutes (five rounds: these machines share their hosts, and a round
# can lose a third of its speed to a neighbour; the best of five is steadier than of three).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${1:-$here/../build/bench/convd-bench}
threads=${THREADS:-2}
rounds=${ROUNDS:-5}
out=${OUT:-$here/RESULTS.md}
py=/usr/bin/python3
# glibc: allocations below 32 MiB from the heap, and freed heap memory kept (torch-warm).
warm=(env MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824)
[ -x "$bench" ] || { echo "compare.sh: no convd-bench at $bench (build first)" >&2; exit 1; }
"$py" -c 'import torch' 2>/dev/null || { echo "compare.sh: $py has no torch (apt install python3-torch)" >&2; exit 1; }

# input | kernel | padding
cases=(
  "1,1,1024,1024|1,1,3,3|0"
  "1,1,1024,1024|1,1,7,7|0"
  "1,1,4096,4096|1,1,3,3|0"
  "1,1,2048,2048|1,1,1,2|0"
  "8,64,56,56|64,64,3,3|1"
  "1,3,512,512|16,3,5,5|2"
)
train="1,1,512,512|1,1,3,3|0"
# Forward + both gradients, for information (the issue sets no target for them).
bwd_cases=(
  "1,1,1024,1024|1,1,3,3|0"
  "8,64,56,56|64,64,3,3|1"
  "1,3,512,512|16,3,5,5|2"
)

log=${out%.md}.jsonl
: >"$log"
{
  echo "{\"meta\":\"start\",\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}"
} >>"$log"

# The FMA peak on 1 and on $threads threads, at the start and at the end: the ceiling of this
# run (a host that shares or throttles the cores shows up here).
peak() {
  "$bench" peak --threads 1 --json >>"$log"
  "$bench" peak --threads "$threads" --json >>"$log"
}
peak

for r in $(seq 1 "$rounds"); do
  for c in "${cases[@]}"; do
    IFS='|' read -r in ker pad <<<"$c"
    echo "round $r: corr2d $in $ker pad $pad" >&2
    "$bench" corr2d --input "$in" --kernel "$ker" --padding "$pad" --threads "$threads" --json >>"$log"
    if [ "$r" -eq 1 ]; then # the naive loop is slow and steady: one round is enough
      "$bench" corr2d --input "$in" --kernel "$ker" --padding "$pad" --threads "$threads" \
        --impl naive --warmup 1 --repeats 3 --json >>"$log"
    fi
    "$py" "$here/torch_bench.py" corr2d --input "$in" --kernel "$ker" --padding "$pad" \
      --threads "$threads" >>"$log"
    "${warm[@]}" "$py" "$here/torch_bench.py" corr2d --input "$in" --kernel "$ker" \
      --padding "$pad" --threads "$threads" --label torch-warm >>"$log"
  done
  for c in "${bwd_cases[@]}"; do
    IFS='|' read -r in ker pad <<<"$c"
    echo "round $r: corr2d fwd+bwd $in $ker pad $pad" >&2
    "$bench" corr2d --input "$in" --kernel "$ker" --padding "$pad" --threads "$threads" \
      --mode fwd+bwd --json >>"$log"
    "$py" "$here/torch_bench.py" corr2d --input "$in" --kernel "$ker" --padding "$pad" \
      --threads "$threads" --mode fwd+bwd >>"$log"
    "${warm[@]}" "$py" "$here/torch_bench.py" corr2d --input "$in" --kernel "$ker" \
      --padding "$pad" --threads "$threads" --mode fwd+bwd --label torch-warm >>"$log"
  done
  IFS='|' read -r in ker pad <<<"$train"
  echo "round $r: train $in $ker" >&2
  "$bench" train --input "$in" --kernel "$ker" --bias --padding "$pad" --steps 200 \
    --threads "$threads" --json >>"$log"
  "$py" "$here/torch_bench.py" train --input "$in" --kernel "$ker" --bias --padding "$pad" \
    --steps 200 --threads "$threads" >>"$log"
  "${warm[@]}" "$py" "$here/torch_bench.py" train --input "$in" --kernel "$ker" --bias \
    --padding "$pad" --steps 200 --threads "$threads" --label torch-warm >>"$log"
done
peak
echo "{\"meta\":\"end\",\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >>"$log"

"$py" "$here/report.py" "$log" "$threads" >"$out"
echo "wrote $out" >&2
cat "$out"
