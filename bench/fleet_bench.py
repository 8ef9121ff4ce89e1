#!/usr/bin/env python3
"""Fleet benchmark of issue 11 (bench/fleet_bench.sh runs it inside a private PostgreSQL).

  fleet_bench.py BUILD_DIR PG_URL

Measures, on one PostgreSQL:
  - tiny jobs/s with 1 and 2 replicas (store-bench tiny: POST /jobs corr2d through done; with
    2 replicas one load generator per replica, run together, jobs claimed by either),
  - the step rate of a 512x512 3x3 training with report_every 1, memory store vs PostgreSQL,
  - follower latency: a step event as seen by a follower on the runner vs on the other replica
    (p50, p99 of the difference),
  - kill -9 of the runner to the job's next step event on the other replica.
Prints one JSON object. The machine is shared: the load average goes with the numbers.

With AB=/path/convd1:/path/convd2 in the environment it measures only tiny jobs/s with 1 and 2
replicas for each binary, in interleaved rounds (ROUNDS, 4; the order reversed every other round)
so that a shared machine's load hits them alike; with STATS=1 also the SQL statements per job with 2 replicas (pg_stat_statements: run
pgtest_run with CV_PG_CONF="shared_preload_libraries='pg_stat_statements'").
"""
import json, os, re, signal, statistics, subprocess, sys, tempfile, threading, time
import http.client

if sys.argv[1] == "--follow":  # a follower process: "step monotonic_time" per step event
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[2]), timeout=120)
    c.request("GET", "/jobs/%s/events" % sys.argv[3])
    r = c.getresponse()
    out = []
    while True:
        line = r.readline()
        if not line:
            break
        t = time.monotonic()
        if line.startswith(b'{"event":"step"'):
            out.append("%d %.6f" % (json.loads(line)["step"], t))
    print("\n".join(out))
    sys.exit(0)

build, pg_url = sys.argv[1], sys.argv[2]
convd = os.path.join(build, "server", "convd")
load = os.path.join(build, "bench", "store-bench")
JOBS = int(os.environ.get("JOBS", "3000"))
THREADS = int(os.environ.get("THREADS", "8"))
STEPS = int(os.environ.get("STEPS", "2000"))
procs = []


def start(store, *flags, binary=None):
    log = tempfile.NamedTemporaryFile(prefix="fleet-bench-", delete=False)
    p = subprocess.Popen([binary or convd, "--listen", "127.0.0.1:0", "--store", store, "--max-steps",
                          "1000000", "--job-history", "1000000", *flags],
                         stderr=log, stdout=subprocess.DEVNULL)
    procs.append(p)
    for _ in range(400):
        m = re.search(rb'"port":(\d+)', open(log.name, "rb").read())
        if m:
            return p, int(m.group(1))
        time.sleep(0.05)
    raise SystemExit("convd did not start: " + open(log.name).read())


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def tiny(ports):
    outs = [None] * len(ports)

    def one(i):
        r = subprocess.run([load, "tiny", str(ports[i]), str(JOBS // len(ports)), str(THREADS)],
                           capture_output=True, text=True)
        outs[i] = json.loads(r.stdout.strip().splitlines()[-1])

    t0 = time.monotonic()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(ports))]
    [t.start() for t in ts]
    [t.join() for t in ts]
    secs = time.monotonic() - t0
    n = sum(o["jobs"] for o in outs)
    return {"jobs": n, "seconds": round(secs, 3), "jobs_per_s": round(n / secs),
            "failed": sum(o["failed"] for o in outs)}


def train(port):
    r = subprocess.run([load, "train", str(port), "512", str(STEPS)], capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def post(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/jobs", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    return data["id"]


def follow(port, job, arrivals, stop_after=None):
    """Records (seq-like index, event, monotonic time) of every line of the job's events."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("GET", "/jobs/%s/events" % job)
    r = c.getresponse()
    n = 0
    while True:
        line = r.readline()
        if not line:
            break
        if line.strip():
            arrivals.append((n, json.loads(line), time.monotonic()))
            n += 1
            if stop_after and n >= stop_after:
                break
    c.close()


def train_body(size, steps, report_every):
    x = [[((i * 7 + j * 3) % 11) / 10 for j in range(size)] for i in range(size)]
    y = [[((i * 5 + j) % 7) / 10 for j in range(size - 2)] for i in range(size - 2)]
    return json.dumps({"kind": "train", "input": x, "target": y, "kernel_size": [3, 3],
                       "loss": "mse", "lr": 0.0001, "steps": steps, "seed": 7,
                       "report_every": report_every})


def psql(sql):
    return subprocess.run(["psql", pg_url, "-Atc", sql], capture_output=True, text=True).stdout.strip()


def main():
    res = {"load_average_start": os.getloadavg()}
    # memory baseline for the step rate
    p, port = start("memory")
    res["memory_train"] = train(port)
    res["memory_tiny"] = tiny([port])
    stop(p)
    a, pa = start(pg_url, "--lease", "5")
    res["pg_train"] = train(pa)
    res["pg_tiny_1"] = tiny([pa])
    b, pb = start(pg_url, "--lease", "5")
    res["pg_tiny_2"] = tiny([pa, pb])
    # follower latency: a steady training with report_every 1 on A; followers on A and B
    body = train_body(128, 100000, 1)  # long enough to be followed live for seconds
    job = post(pa, body)
    while psql("SELECT status FROM cv_jobs WHERE id = '%s'" % job) == "0":
        time.sleep(0.01)
    owner_pid = int(psql("SELECT split_part(owner, ':', 2) FROM cv_jobs WHERE id = '%s'" % job))
    runner, other = (pa, pb) if owner_pid == a.pid else (pb, pa)
    # one process per follower (CLOCK_MONOTONIC is system-wide): no GIL between the two
    fa = subprocess.Popen([sys.executable, __file__, "--follow", str(runner), job],
                          stdout=subprocess.PIPE, text=True)
    fb = subprocess.Popen([sys.executable, __file__, "--follow", str(other), job],
                          stdout=subprocess.PIPE, text=True)
    out_a, out_b = fa.communicate()[0], fb.communicate()[0]
    seen = dict((int(l.split()[0]), float(l.split()[1])) for l in out_a.split("\n") if l)
    seen_b = [(int(l.split()[0]), float(l.split()[1])) for l in out_b.split("\n") if l]
    # A follower first replays the log written before it connected, in a burst: those reads
    # are not latencies. Count only steps that A saw after both followers had caught up (the
    # later of their first reads, plus 0.5 s).
    cutoff = max(min(seen.values(), default=0), min((t for _, t in seen_b), default=0)) + 0.5
    lat = sorted((t - seen[k]) * 1000 for k, t in seen_b if k in seen and seen[k] > cutoff)
    if lat:
        res["follower_latency_ms"] = {"n": len(lat), "p50": round(statistics.median(lat), 2),
                                      "p99": round(lat[int(0.99 * (len(lat) - 1))], 2)}
    # kill -9 of the runner: time to the next step event on the other replica
    job = post(pa, train_body(256, 40000, 50))
    while psql("SELECT count(*) FROM cv_checkpoints WHERE job_id = '%s'" % job) != "1":
        time.sleep(0.02)
    owner_pid = int(psql("SELECT split_part(owner, ':', 2) FROM cv_jobs WHERE id = '%s'" % job))
    victim, survivor_port = (a, pb) if owner_pid == a.pid else (b, pa)
    events = []
    t = threading.Thread(target=follow, args=(survivor_port, job, events))
    t.start()
    time.sleep(0.5)
    t_kill = time.monotonic()
    victim.kill()
    victim.wait()
    t.join()
    resumed = [i for i, (_, ev, _) in enumerate(events) if ev.get("event") == "resumed"]
    if resumed:
        nxt = [tt for _, ev, tt in events[resumed[0]:] if ev.get("event") == "step"]
        res["kill9_to_next_step_s"] = round(nxt[0] - t_kill, 3) if nxt else None
        res["kill9_resumed_at_step"] = events[resumed[0]][1].get("step")
    res["load_average_end"] = os.getloadavg()
    for q in procs:
        stop(q)
    print(json.dumps(res))


def ab(binaries):
    """Tiny jobs/s of each binary with 1 and 2 replicas, interleaved rounds."""
    stats = os.environ.get("STATS") == "1"
    if stats:
        psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    res = {b: {"1": [], "2": [], "statements_per_job_2": None} for b in binaries}
    for rnd in range(int(os.environ.get("ROUNDS", "4"))):
        for b in binaries if rnd % 2 == 0 else binaries[::-1]:  # ABBA: a load trend hits both
            a, pa = start(pg_url, "--lease", "5", binary=b)
            one = tiny([pa])
            one["load1"] = round(os.getloadavg()[0], 2)
            b2, pb = start(pg_url, "--lease", "5", binary=b)
            if stats:
                psql("SELECT pg_stat_statements_reset()")
            two = tiny([pa, pb])
            two["load1"] = round(os.getloadavg()[0], 2)
            if stats:
                rows = psql("SELECT calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) FROM "
                            "pg_stat_statements WHERE calls > 0 AND query NOT LIKE '%pg_stat%' "
                            "ORDER BY calls DESC LIMIT 12")
                res[b]["statements_per_job_2"] = {q: round(int(c) / two["jobs"], 2) for c, q in
                                                  (l.split("|", 1) for l in rows.split("\n") if l)}
            stop(a)
            stop(b2)
            for key, r in (("1", one), ("2", two)):
                res[b][key].append({k: r[k] for k in ("jobs_per_s", "failed", "load1")})
            print(rnd, b, "1 replica", one["jobs_per_s"], "2 replicas", two["jobs_per_s"],
                  "load", os.getloadavg(), file=sys.stderr, flush=True)
    print(json.dumps(res))


try:
    if os.environ.get("AB"):
        ab(os.environ["AB"].split(":"))
    else:
        main()
finally:
    for q in procs:
        if q.poll() is None:
            q.kill()
