#!/usr/bin/env python3
"""Loopback load test of convd: load.py <path to convd>.

Asserts correctness only, never timings (the machine is shared):
  1. /corr2d from CONNS keep-alive clients for SECONDS, with streamed /train requests and event
     followers alongside: every reply 200, or 503 with Retry-After (deliberate shedding);
  2. JOBS jobs posted at once: each 202 with a distinct id, or 503 with Retry-After; every
     accepted job is listed once and reaches a terminal state (none lost, none twice);
  3. slow-header, half-body and stalled-reader connections held open: /healthz, /readyz and
     /corr2d still answered;
  4. RSS and open fds return near their warm-up level (generous bounds; figures printed).
Not yet here: the 10,000-connection case (needs a raised fd limit for the test process).
CI uses small bounded defaults; CONVD_LOAD_SECONDS=30 CONVD_LOAD_CONNS=256 CONVD_LOAD_JOBS=1000
is the full run.
"""
import http.client, json, os, re, subprocess, sys, threading, time

SECONDS = float(os.environ.get("CONVD_LOAD_SECONDS", "5"))
CONNS = int(os.environ.get("CONVD_LOAD_CONNS", "32"))
JOBS = int(os.environ.get("CONVD_LOAD_JOBS", "200"))
TRAINS = int(os.environ.get("CONVD_LOAD_TRAINS", "8"))
CORR = json.dumps({"input": [[0, 1, 2], [3, 4, 5], [6, 7, 8]], "kernel": [[0, 1], [2, 3]]})
TRAIN = json.dumps({"input": [[1, 2, 3], [4, 5, 6]], "target": [[1, 1], [1, 1]],
                    "kernel_size": [1, 2], "steps": 200, "seed": 1, "stream": True})
HDRS = {"Content-Type": "application/json"}
failures = []
lock = threading.Lock()


def fail(msg):
    with lock:
        failures.append(msg)


def start(binary):
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--job-history", str(JOBS * 2 + 100)],
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    port = None
    while port is None and time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        m = re.search(r'"port":(\d+)', line) if "listening" in line else None
        if m:
            port = int(m.group(1))
    if port is None:
        p.kill()
        sys.exit("load: convd did not report its port")
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()  # drain the log
    return p, port


def usage(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) // 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def check_reply(r, body, what):
    if r.status == 200:
        return True
    if r.status == 503 and r.getheader("Retry-After"):
        return False
    fail(f"{what}: {r.status} {body[:200]!r}")
    return False


def corr2d_client(port, stop, counts):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    ok = shed = 0
    while not stop.is_set():
        try:
            c.request("POST", "/corr2d", CORR, HDRS)
            r = c.getresponse()
            body = r.read()
        except Exception as e:  # a dropped connection is an error
            fail(f"corr2d: {e!r}")
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            continue
        if check_reply(r, body, "corr2d"):
            ok += 1
            if json.loads(body)["output"] != [[19.0, 25.0], [37.0, 43.0]]:
                fail(f"corr2d: wrong output {body[:100]!r}")
        else:
            shed += 1
    c.close()
    with lock:
        counts[0] += ok
        counts[1] += shed


def train_client(port, stop):
    while not stop.is_set():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            c.request("POST", "/train", TRAIN, HDRS)
            r = c.getresponse()
            body = r.read()
        except Exception as e:
            fail(f"train: {e!r}")
            continue
        finally:
            c.close()
        if r.status == 200:
            lines = [json.loads(x) for x in body.splitlines() if x.strip() and not x.startswith(b":")]
            if not lines or lines[-1].get("event") != "done":
                fail(f"train: stream did not end with done: {body[-200:]!r}")
        else:
            check_reply(r, body, "train")


def request(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        c.request(method, path, body, HDRS if body else {})
        r = c.getresponse()
        return r, r.read()
    finally:
        c.close()


def follower(port, job_id):
    """Follows one job's events to the end."""
    try:
        r, body = request(port, "GET", f"/jobs/{job_id}/events")
        if r.status not in (200, 204):
            fail(f"events {job_id}: {r.status}")
    except Exception as e:
        fail(f"events {job_id}: {e!r}")


def phase_load(port):
    stop = threading.Event()
    counts = [0, 0]
    threads = [threading.Thread(target=corr2d_client, args=(port, stop, counts)) for _ in range(CONNS)]
    threads += [threading.Thread(target=train_client, args=(port, stop)) for _ in range(TRAINS)]
    for t in threads:
        t.start()
    job_followers = []
    for _ in range(4):
        r, body = request(port, "POST", "/jobs", json.dumps(dict(json.loads(TRAIN), kind="train")))
        if r.status == 202:
            t = threading.Thread(target=follower, args=(port, json.loads(body)["id"]))
            t.start()
            job_followers.append(t)
    time.sleep(SECONDS)
    stop.set()
    for t in threads + job_followers:
        t.join(600)
        if t.is_alive():
            fail("load: a client is still waiting after 600 s")
    print(f"load: {CONNS} connections for {SECONDS:g} s + {TRAINS} streamed trainings: "
          f"{counts[0]} /corr2d answered 200, {counts[1]} shed with 503")
    if counts[0] == 0:
        fail("load: no /corr2d succeeded")


def phase_jobs(port):
    results = [None] * JOBS
    body = json.dumps({"kind": "corr2d", "input": [[0, 1, 2], [3, 4, 5], [6, 7, 8]], "kernel": [[0, 1], [2, 3]]})
    go = threading.Event()

    def post(i):
        go.wait()
        try:
            r, b = request(port, "POST", "/jobs", body)
        except Exception as e:
            fail(f"jobs: POST {i}: {e!r}")
            return
        if r.status == 202:
            results[i] = json.loads(b)["id"]
        elif not (r.status == 503 and r.getheader("Retry-After")):
            fail(f"jobs: POST {i}: {r.status} {b[:200]!r}")

    threads = [threading.Thread(target=post, args=(i,)) for i in range(JOBS)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(600)
    ids = [x for x in results if x]
    if len(set(ids)) != len(ids):
        fail("jobs: an id was given twice")
    deadline = time.time() + 600
    pending = set(ids)
    while pending and time.time() < deadline:
        for i in list(pending):
            r, b = request(port, "GET", f"/jobs/{i}")
            if r.status != 200:
                fail(f"jobs: GET {i}: {r.status}")
                pending.discard(i)
            elif json.loads(b)["status"] in ("succeeded", "failed", "cancelled"):
                if json.loads(b)["status"] != "succeeded":
                    fail(f"jobs: {i} ended {json.loads(b)['status']}")
                pending.discard(i)
        if pending:
            time.sleep(0.2)
    if pending:
        fail(f"jobs: {len(pending)} jobs not terminal after 600 s")
    print(f"load: {JOBS} jobs posted at once: {len(ids)} accepted and done, {JOBS - len(ids)} refused with 503")


def phase_faults(port):
    """Slow headers, half bodies and stalled readers held open: the probes and a /corr2d are
    still answered meanwhile, and closing them gives the fds back (checked in main)."""
    import socket
    n = int(os.environ.get("CONVD_LOAD_FAULT_CONNS", "30"))
    held = []
    big = json.dumps({"input": [[1.0] * 64] * 64, "kernel": [[1.0]], "output": "nested"})
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        if i % 3 == 0:  # slow header: the request line and half a header, then nothing
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        elif i % 3 == 1:  # half body: Content-Length promises more than is sent
            s.sendall(b"POST /corr2d HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"input\":")
        else:  # stalled reader: asks for replies and never reads them
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            req = (f"POST /corr2d HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(big)}\r\n\r\n{big}").encode()
            for _ in range(4):
                s.sendall(req)
        held.append(s)
    time.sleep(1)
    for path in ("/healthz", "/readyz"):
        r, body = request(port, "GET", path)
        if r.status != 200:
            fail(f"faults: {path} answered {r.status} with {n} hostile connections open")
    r, body = request(port, "POST", "/corr2d", CORR)
    if r.status != 200:
        fail(f"faults: /corr2d answered {r.status} with {n} hostile connections open")
    for s in held:
        s.close()
    print(f"load: {n} slow-header / half-body / stalled-reader connections: probes and /corr2d answered")


def main():
    p, port = start(sys.argv[1])
    try:
        for _ in range(200):  # warm-up
            request(port, "POST", "/corr2d", CORR)
        time.sleep(0.5)
        rss0, fds0 = usage(p.pid)
        phase_load(port)
        phase_jobs(port)
        phase_faults(port)
        rss1 = fds1 = None
        for _ in range(60):  # let closed connections and finished jobs go
            rss1, fds1 = usage(p.pid)
            if fds1 <= fds0 + 8:
                break
            time.sleep(1)
        print(f"load: warm-up RSS {rss0} MB, {fds0} fds; after {rss1} MB, {fds1} fds")
        if fds1 > fds0 + 8:
            fail(f"load: {fds1 - fds0} more fds than at warm-up")
        if rss1 > rss0 + 256:
            fail(f"load: RSS grew {rss1 - rss0} MB over warm-up")
        if p.poll() is not None:
            fail(f"load: convd exited with {p.returncode}")
    finally:
        p.terminate()
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
    for f in failures[:20]:
        print("FAIL", f)
    print(f"load: {'FAILED' if failures else 'ok'} ({len(failures)} failures)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
