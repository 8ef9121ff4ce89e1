#!/usr/bin/env bash
# The store benchmark of issue 10: memory vs SQLite in the same run, each on its own convd.
#   - tiny jobs: POST /jobs of the seed's corr2d through its done event (store-bench tiny),
#   - the step rate of a 512x512 3x3 training with report_every 1 (store-bench train),
#   - restart of a daemon holding 10,000 finished jobs: time from exec to /readyz 200,
#   - RSS after 100 finished jobs of steps 100000, report_every 1 on a 3x3 input (SQLite).
# and writes bench/STORE.md. The machine is shared: the load average is recorded with it.
#
#   bench/store_bench.sh [build dir]        (default build)
#
# Environment: JOBS (tiny jobs per store and round, 4000), ROUNDS (3), THREADS (client
# connections, 8), STEPS (training steps, 2000), RSS_JOBS (100; 0 skips the RSS run), OUT (bench/STORE.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(realpath "${1:-$here/../build}")"
convd="$build/server/convd"
load="$build/bench/store-bench"
jobs="${JOBS:-4000}"
rounds="${ROUNDS:-3}"
threads="${THREADS:-8}"
steps="${STEPS:-2000}"
rss_jobs="${RSS_JOBS:-100}"
out="${OUT:-$here/STORE.md}"
dir="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

port_of() { # log -> port from the listening line
  for _ in $(seq 1 200); do
    p=$(grep -o '"port":[0-9]*' "$1" 2>/dev/null | head -1 | cut -d: -f2 || true)
    [ -n "$p" ] && { echo "$p"; return; }
    sleep 0.05
  done
  echo "convd did not start: $(cat "$1")" >&2; exit 1
}
start() { # store [flags...]
  local store="$1"; shift
  : > "$dir/log"
  "$convd" --listen 127.0.0.1:0 --store "$store" --max-steps 1000000 "$@" 2>"$dir/log" &
  pid=$!
  port=$(port_of "$dir/log")
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=""; }

# The machine is shared: each figure is the best of ROUNDS rounds, the stores alternating within
# a round (as bench/compare.sh does), so both see the same load.
declare -A tiny train best_tiny best_train
best_tiny[memory]=0; best_tiny[sqlite]=0; best_train[memory]=0; best_train[sqlite]=0
for round in $(seq 1 "$rounds"); do
  for store in memory sqlite; do
    url=memory; [ "$store" = sqlite ] && url="sqlite:$dir/db/convd.db"
    start "$url" --job-history 100000 --store-memory-max 2000000000
    t=$("$load" tiny "$port" "$jobs" "$threads")
    r=$("$load" train "$port" 512 "$steps")
    stop
    jps=$(echo "$t" | grep -o '"jobs_per_s":[0-9]*' | cut -d: -f2)
    sps=$(echo "$r" | grep -o '"steps_per_s":[0-9.]*' | cut -d: -f2)
    if (( $(echo "$jps > ${best_tiny[$store]}" | bc -l) )); then best_tiny[$store]=$jps; tiny[$store]=$t; fi
    if (( $(echo "$sps > ${best_train[$store]}" | bc -l) )); then best_train[$store]=$sps; train[$store]=$r; fi
    echo "round $round $store: $t $r" >&2
  done
done

# Restart with the >= 10,000 finished jobs the SQLite run left.
t0=$(date +%s.%N)
start "sqlite:$dir/db/convd.db" --job-history 20000
for _ in $(seq 1 2000); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.005
done
t1=$(date +%s.%N)
held=$(( rounds * (jobs + 1) )) # every tiny job and training of the SQLite rounds
stop
restart_s=$(echo "$t1 - $t0" | bc -l)

rss_line="not run (RSS_JOBS=0)"
if [ "$rss_jobs" -gt 0 ]; then
  rm -rf "$dir/db2"
  start "sqlite:$dir/db2/convd.db"
  body='{"kind":"train","input":[[1,2,3],[4,5,6],[7,8,9]],"target":[[1,2],[3,4]],"kernel_size":[2,2],"lr":0.001,"steps":100000,"report_every":1}'
  t0=$(date +%s)
  for i in $(seq 1 "$rss_jobs"); do
    until curl -sf -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$port/jobs" >/dev/null; do sleep 0.5; done
  done
  until [ "$(curl -s "http://127.0.0.1:$port/jobs?status=succeeded&limit=1000" | grep -o '"id"' | wc -l)" -ge "$rss_jobs" ]; do sleep 1; done
  sleep 1
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  db_mb=$(du -sm "$dir/db2" | cut -f1)
  rss_line="$rss_jobs jobs in $(( $(date +%s) - t0 )) s: RSS $((rss / 1024)) MB (target < 100 MB); database $db_mb MB"
  stop
fi

loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "# Store benchmark (bench/store_bench.sh)"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at the end: $loadavg (the machine"
  echo "is shared with other agents: numbers move with the load). SQLite: WAL, synchronous=NORMAL."
  echo
  echo "| | memory | SQLite | target |"
  echo "|---|---|---|---|"
  jps() { echo "$1" | grep -o '"jobs_per_s":[0-9]*' | cut -d: -f2; }
  sps() { echo "$1" | grep -o '"steps_per_s":[0-9.]*' | cut -d: -f2; }
  echo "| tiny jobs/s (best of $rounds rounds of $jobs POST /jobs corr2d through done, $threads connections) | $(jps "${tiny[memory]}") | $(jps "${tiny[sqlite]}") | SQLite >= 2000 |"
  m=$(sps "${train[memory]}"); s=$(sps "${train[sqlite]}")
  echo "| 512x512 3x3 training, report_every 1, steps/s (best of $rounds runs of $steps steps) | $m | $s ($(echo "scale=1; 100 * $s / $m" | bc -l) %) | >= 95 % of memory |"
  echo "| restart holding $held finished jobs: exec to /readyz 200 | | $(printf '%.3f' "$restart_s") s | < 1 s |"
  echo
  echo "Memory: $rss_line."
  echo
  echo "Best rounds: memory ${tiny[memory]} ${train[memory]}; sqlite ${tiny[sqlite]} ${train[sqlite]}."
  echo "The training's steps/s is steps / the job's own elapsed_ms (compute time, with the writer"
  echo "thread and a live /events reader of the same daemon competing for the 2 cores)."
} > "$out"
cat "$out"
