#!/usr/bin/env bash
# Measures convd against the strongest libraries at each job, in one run on this machine, and
# writes bench/RESULTS.md (bench/report.py renders it from the JSON lines in RESULTS.jsonl):
#
#   - OpenCV cv::filter2D with cv::setNumThreads($THREADS) on the single-channel shapes
#     (build/bench/opencv-bench);
#   - oneDNN's convolution (algorithms auto, direct and winograd; each with the reorders from and
#     to NCHW counted, and on its own blocked layouts) and its backward-weights
#     (build/bench/dnnl-bench);
#   - PyTorch (Debian python3-torch; glibc told to keep outputs on the heap, so the time is the
#     arithmetic and not page faults of fresh output buffers).
#
#   bench/compare.sh [build dir]      (default: build; it must hold bench/convd-bench, and
#                                       bench/dnnl-bench and bench/opencv-bench when their
#                                       packages are installed: bench/packages.txt)
#   THREADS=2 ROUNDS=5 OUT=bench/RESULTS.md bench/compare.sh
#
# The anchors are bench-only: `apt-get install $(cat bench/packages.txt)` (Debian 12), then
# re-run cmake so that build/bench/dnnl-bench and opencv-bench are built; the normal build and
# CI never need them.
#
# Every implementation gets the same inputs (bench/fill.h) and reports check sums of its output,
# which report.py compares with convd's. For each case the implementations run back to back,
# ROUNDS times in turn, so a burst of load from elsewhere hits all of them; the report keeps
# each implementation's best round (its median over that round's repeats). The FMA peak and the
# triad bandwidth are measured at the start and the end (the roofline), and the load average is
# recorded with them: the machine is shared. A missing anchor (package not installed) is left
# out of the report, not failed. Takes about six minutes on 2 threads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build}/bench
threads=${THREADS:-2}
rounds=${ROUNDS:-5}
out=${OUT:-$here/RESULTS.md}
py=/usr/bin/python3
# glibc: allocations below 32 MiB from the heap, and freed heap memory kept.
warm=(env MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824)
[ -x "$bin/convd-bench" ] || { echo "compare.sh: no $bin/convd-bench (build first)" >&2; exit 1; }
have_dnnl=0 have_cv=0 have_torch=0
[ -x "$bin/dnnl-bench" ] && have_dnnl=1 || echo "compare.sh: no dnnl-bench, oneDNN left out" >&2
[ -x "$bin/opencv-bench" ] && have_cv=1 || echo "compare.sh: no opencv-bench, OpenCV left out" >&2
"$py" -c 'import torch, numpy' 2>/dev/null && have_torch=1 ||
  echo "compare.sh: $py has no torch/numpy, PyTorch left out" >&2

# input | kernel | padding
fwd_cases=(
  "1,1,1024,1024|1,1,3,3|0"
  "1,1,1024,1024|1,1,7,7|0"
  "1,1,4096,4096|1,1,3,3|0"
  "1,1,2048,2048|1,1,1,2|0"
  "8,64,56,56|64,64,3,3|1"
  "1,3,512,512|16,3,5,5|2"
)
bwdk_cases=("8,64,56,56|64,64,3,3|1")
# Forward + both gradients (convd and PyTorch; for information).
fwdbwd_cases=("8,64,56,56|64,64,3,3|1")
# Training steps (forward + kernel and bias gradients + SGD update): input | kernel | pad | steps
train_cases=(
  "1,1,512,512|1,1,3,3|0|200"
  "8,64,56,56|64,64,3,3|1|20"
)

log=${out%.md}.jsonl
: >"$log"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
echo "{\"meta\":\"start\",\"load\":\"$(loadavg)\",\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}" >>"$log"

# The roofline of this run: FMA peak on 1 and $threads threads, triad bandwidth on $threads.
roofline() {
  "$bin/convd-bench" peak --threads 1 --json >>"$log"
  "$bin/convd-bench" peak --threads "$threads" --json >>"$log"
  "$bin/convd-bench" triad --threads "$threads" --json >>"$log"
}
roofline

# The accuracy of the paths the many-channel layer takes, against the double reference.
"$bin/convd-bench" accuracy --input 8,64,56,56 --kernel 64,64,3,3 --padding 1 --threads "$threads" \
  >>"$log"
"$bin/convd-bench" accuracy --input 8,64,56,56 --kernel 64,64,3,3 --padding 1 --threads "$threads" \
  --isa generic >>"$log"

single_channel() { [[ $1 == 1,1,* && $2 == 1,1,* ]]; }

for r in $(seq 1 "$rounds"); do
  echo "{\"meta\":\"round\",\"round\":$r,\"load\":\"$(loadavg)\"}" >>"$log"
  for c in "${fwd_cases[@]}"; do
    IFS='|' read -r in ker pad <<<"$c"
    echo "round $r: fwd $in $ker pad $pad" >&2
    args=(--input "$in" --kernel "$ker" --padding "$pad" --threads "$threads")
    "$bin/convd-bench" corr2d "${args[@]}" --json >>"$log"
    if [ "$r" -eq 1 ]; then # the naive loop is slow and steady: one round is enough
      "$bin/convd-bench" corr2d "${args[@]}" --impl naive --warmup 1 --repeats 3 --json >>"$log"
    fi
    if [ $have_cv = 1 ] && single_channel "$in" "$ker"; then
      "$bin/opencv-bench" filter2d "${args[@]}" >>"$log"
    fi
    [ $have_dnnl = 1 ] && "$bin/dnnl-bench" conv "${args[@]}" --mode fwd >>"$log"
    [ $have_torch = 1 ] && "${warm[@]}" "$py" "$here/torch_bench.py" corr2d "${args[@]}" >>"$log"
  done
  for c in "${bwdk_cases[@]}"; do
    IFS='|' read -r in ker pad <<<"$c"
    echo "round $r: kernel gradient $in $ker pad $pad" >&2
    args=(--input "$in" --kernel "$ker" --padding "$pad" --threads "$threads" --mode bwdk)
    "$bin/convd-bench" corr2d "${args[@]}" --json >>"$log"
    [ $have_dnnl = 1 ] && "$bin/dnnl-bench" conv "${args[@]}" >>"$log"
    [ $have_torch = 1 ] && "${warm[@]}" "$py" "$here/torch_bench.py" corr2d "${args[@]}" >>"$log"
  done
  for c in "${fwdbwd_cases[@]}"; do
    IFS='|' read -r in ker pad <<<"$c"
    echo "round $r: fwd+bwd $in $ker pad $pad" >&2
    args=(--input "$in" --kernel "$ker" --padding "$pad" --threads "$threads" --mode fwd+bwd)
    "$bin/convd-bench" corr2d "${args[@]}" --json >>"$log"
    [ $have_torch = 1 ] && "${warm[@]}" "$py" "$here/torch_bench.py" corr2d "${args[@]}" >>"$log"
  done
  for c in "${train_cases[@]}"; do
    IFS='|' read -r in ker pad steps <<<"$c"
    echo "round $r: train $in $ker pad $pad" >&2
    args=(--input "$in" --kernel "$ker" --padding "$pad" --threads "$threads")
    "$bin/convd-bench" train "${args[@]}" --bias --steps "$steps" --json >>"$log"
    [ $have_dnnl = 1 ] && "$bin/dnnl-bench" conv "${args[@]}" --mode train >>"$log"
    [ $have_torch = 1 ] && "${warm[@]}" "$py" "$here/torch_bench.py" train "${args[@]}" --bias \
      --steps "$steps" >>"$log"
  done
done
roofline
echo "{\"meta\":\"end\",\"load\":\"$(loadavg)\",\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}" >>"$log"

"$py" "$here/report.py" "$log" "$threads" >"$out"
echo "wrote $out" >&2
cat "$out"
