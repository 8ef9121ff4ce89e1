#!/usr/bin/env bash
# The fleet benchmark of issue 11: convd replicas on one private PostgreSQL cluster
# (tests/support/pgtest: initdb + postgres as the postgres user in a temp dir, fsync off) with
# the memory store in the same run. Writes the "PostgreSQL fleet" section of bench/STORE.md
# (between its markers; the rest of the file is store_bench.sh's).
#
#   bench/fleet_bench.sh [build dir]      (default build; needs the postgresql package)
#
# Environment: JOBS (tiny jobs per configuration, 3000), THREADS (client connections per
# replica, 8), STEPS (512x512 training steps, 2000), OUT (bench/STORE.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(realpath "${1:-$here/../build}")"
out="${OUT:-$here/STORE.md}"
json=$("$build/tests/support/pgtest_run" python3 "$here/fleet_bench.py" "$build" @PGURL@)
echo "$json" >&2
section=$(python3 - "$json" <<'PY'
import json, sys, time
r = json.loads(sys.argv[1])
mem, pg = r["memory_train"]["steps_per_s"], r["pg_train"]["steps_per_s"]
lat = r.get("follower_latency_ms", {})
la = r["load_average_end"]
print("<!-- fleet_bench.sh: begin -->")
print("## PostgreSQL fleet (bench/fleet_bench.sh)\n")
print("%s, 2 cores, load average at the end: %.2f %.2f %.2f (shared machine). PostgreSQL 15 on a unix "
      "socket, a private cluster with fsync off (a test cluster: production numbers depend on the "
      "server's disk and network)." % (time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), *la))
print()
print("| | memory | PostgreSQL, 1 replica | PostgreSQL, 2 replicas | target |")
print("|---|---|---|---|---|")
print("| tiny jobs/s (POST /jobs corr2d through done, %d jobs, 8 connections a replica) | %d | %d | %d | >= 1000 |"
      % (r["pg_tiny_1"]["jobs"], r["memory_tiny"]["jobs_per_s"], r["pg_tiny_1"]["jobs_per_s"],
         r["pg_tiny_2"]["jobs_per_s"]))
print("| 512x512 3x3 training, report_every 1, steps/s | %.1f | %.1f (%.1f %%) | | >= 95 %% of memory |"
      % (mem, pg, 100.0 * pg / mem))
if lat:
    print("| follower latency, step on A to the event on B (128x128 training, report_every 1) | | | p50 %.1f ms, p99 %.1f ms (%d events) | ~100 ms |"
          % (lat["p50"], lat["p99"], lat["n"]))
if r.get("kill9_to_next_step_s") is not None:
    print("| kill -9 of the runner to the job's next step on the other replica (lease 5 s) | | | %.2f s (resumed at step %s) | ~lease + 1 s |"
          % (r["kill9_to_next_step_s"], r.get("kill9_resumed_at_step")))
print()
if lat:
    print("Follower latency is measured as the time between two follower processes receiving the same step event, one on the\n"
          "runner (A, its in-memory stream) and one on the other replica (B, LISTEN/NOTIFY then a store read); both see only\n"
          "committed events, so the difference is the cross-replica path alone. Only events after both followers caught up\n"
          "with the replayed log are counted. A negative p50 means B was as fast as A within the two processes' scheduling.\n")
print("Raw: `%s`" % json.dumps(r))
print("<!-- fleet_bench.sh: end -->")
PY
)
touch "$out"
python3 - "$out" "$section" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
pat = re.compile(r"<!-- fleet_bench.sh: begin -->.*?<!-- fleet_bench.sh: end -->", re.S)
text = pat.sub(lambda m: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
echo "wrote $out" >&2
