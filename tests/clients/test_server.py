#!/usr/bin/env python3
"""The daemon's features for clients (issue 13), over HTTP against a real convd: job params, name and labels, the
label filter, ?include=losses, running jobs' rate, NDJSON heartbeats, the loss_rising warning, saved kernels,
replies ending with a newline, --listen PORT, the start line, a port in use, and the web page's security headers.

usage: test_server.py CONVD_BINARY [unittest options]
"""

import http.client
import json
import os
import re
import threading
import time
import unittest

from daemon import ROOT, Daemon, binary, long_training

from convd import Client, Conflict, InvalidRequest, NotFound  # noqa: E402

with open(os.path.join(ROOT, "clients", "examples", "train-seed.json"), encoding="utf-8") as _f:
    SEED = json.load(_f)
SEED_X = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def raw(url, method, path, body=None, headers=None):
    """(status, headers dict with lower-case names, body bytes) of one request."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        data = None if body is None else json.dumps(body).encode()
        h = dict(headers or {})
        if data is not None:
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class ServerTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--workers", "1", "--heartbeat", "0.2")
        cls.c = Client(cls.d.url, timeout=60)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.d.stop()

    def seed_job(self, **extra):
        job = self.c.submit("train", **dict(SEED, **extra))
        job.wait()
        return job

    def test_params_name_labels(self):
        job = self.seed_job(name="edge run", labels={"exp": "edges", "rep": "1"}, seed=7)
        info = job.refresh()
        self.assertEqual(info["name"], "edge run")
        self.assertEqual(info["labels"], {"exp": "edges", "rep": "1"})
        p = info["params"]
        self.assertEqual((p["kernel_size"], p["lr"], p["optimizer"], p["loss"], p["steps"], p["seed"], p["bias"]),
                         ([1, 2], 0.012, "sgd", "sse", 20, 7, False))
        self.assertEqual((p["in_channels"], p["out_channels"], p["input_shape"]), (1, 1, [1, 1, 6, 8]))
        plain = self.seed_job().refresh()
        self.assertEqual((plain["name"], plain["labels"]), (None, {}))
        self.assertIsNotNone(plain["params"]["seed"])  # the drawn seed, so the run can be repeated
        adam = self.c.submit("train", **dict(SEED, optimizer="adam", lr=0.1)).refresh()
        self.assertEqual((adam["params"]["beta1"], adam["params"]["beta2"]), (0.9, 0.999))
        corr = self.c.submit("corr2d", input=SEED_X, kernel="edge", name="c")
        corr.wait()
        self.assertEqual(corr.refresh()["params"]["kernel_size"], [1, 2])

    def test_bad_name_and_labels(self):
        for bad, pointer in (({"name": ""}, "/name"), ({"labels": {"a b": "x"}}, "/labels/a b"),
                             ({"labels": {"k": 3}}, "/labels/k"), ({"labels": ["x"]}, "/labels")):
            with self.assertRaises(InvalidRequest) as caught:
                self.c.submit("train", **dict(SEED, **bad))
            self.assertIn(pointer, caught.exception.pointers)

    def test_label_filter(self):
        tag = f"t{time.monotonic_ns()}"
        a = self.seed_job(labels={"suite": tag, "lr": "low"})
        b = self.seed_job(labels={"suite": tag, "lr": "high"})
        self.seed_job(labels={"suite": "other"})
        self.assertEqual([j.id for j in self.c.jobs(label=f"suite={tag}")], [b.id, a.id])
        self.assertEqual([j.id for j in self.c.jobs(label=[f"suite={tag}", "lr=low"])], [a.id])
        self.assertEqual([j.id for j in self.c.jobs(label={"suite": tag, "lr": "none"})], [])
        self.assertEqual(len(list(self.c.jobs(label=f"suite={tag}", limit=1))), 1)
        status, _, body = raw(self.d.url, "GET", "/jobs?label=novalue")
        self.assertEqual((status, json.loads(body)["code"]), (400, "invalid_query"))

    def test_losses_only_when_asked(self):
        job = self.seed_job()
        brief = job.refresh()
        self.assertNotIn("losses", brief["result"])
        self.assertEqual(brief["result"]["steps"], 20)
        full = job.refresh(losses=True)
        self.assertEqual(len(full["result"]["losses"]), 20)
        self.assertAlmostEqual(full["result"]["losses"][19], 0.3507310, places=5)
        listed = [j.info for j in self.c.jobs(limit=5)]
        self.assertTrue(all("result" not in j for j in listed))

    def test_running_job_shows_rate_and_heartbeats(self):
        """A quiet stream gets heartbeat lines; a running job shows elapsed_ms and steps_per_s."""
        blocker = self.c.submit("train", **long_training())
        try:
            deadline = time.monotonic() + 60
            info = blocker.refresh()
            while time.monotonic() < deadline and not (info["status"] == "running" and info["progress"]["step"]):
                time.sleep(0.05)
                info = blocker.refresh()
            self.assertEqual(info["status"], "running")
            self.assertGreater(info["elapsed_ms"], 0)
            self.assertGreater(info["steps_per_s"], 0)
            # Its events after the start are silent until step 100,000: heartbeats come instead.
            seen = []
            for event in self.c.stream("GET", f"/jobs/{blocker.id}/events", heartbeats=True):
                seen.append(event["event"])
                if seen.count("heartbeat") >= 2:
                    break
            self.assertEqual(seen[0], "start")
            self.assertEqual(seen[-2:], ["heartbeat", "heartbeat"])
        finally:
            blocker.cancel()

    def test_loss_rising_warning(self):
        events = list(self.c.train_stream(SEED_X, [[19, 25], [37, 43]], kernel_size=2, steps=30, lr=0.1, seed=1))
        warnings = [e for e in events if e["event"] == "warning"]
        self.assertEqual(len(warnings), 1, events)
        w = warnings[0]
        self.assertEqual(w["code"], "loss_rising")
        self.assertGreater(w["loss"], 1000 * w["first_loss"])
        self.assertEqual(events[-1]["event"], "error")  # then it diverges, as before
        calm = list(self.c.train_stream(SEED["input"], SEED["target"], **{k: v for k, v in SEED.items()
                                                                          if k not in ("input", "target")}))
        self.assertFalse([e for e in calm if e["event"] == "warning"])

    def test_saved_kernels(self):
        job = self.seed_job()
        name = f"edge_{os.getpid()}"
        saved = self.c.save_kernel(name, from_job=job)
        self.assertEqual((saved["name"], saved["builtin"], saved["source"], saved["shape"]),
                         (name, False, job.id, [1, 2]))
        self.assertAlmostEqual(saved["kernel"][0][0], 0.77563274, places=5)
        self.assertIn(name, [k["name"] for k in self.c.kernels()])
        self.assertTrue(all(k["builtin"] for k in self.c.kernels() if k["name"] == "edge"))
        out = self.c.corr2d(SEED["input"], name, raw=True)["output"]
        self.assertAlmostEqual(out[1][1], 0.77563274, places=5)
        # As init: a training that starts at the learned kernel starts at its low loss.
        first = next(e for e in self.c.train_stream(SEED["input"], SEED["target"], init=name, bias=False, steps=1)
                     if e["event"] == "step")
        self.assertLess(first["loss"], 0.31)
        status, headers, _ = raw(self.d.url, "POST", "/kernels", {"name": name, "weight": [[1, 2, 3]]})
        self.assertEqual((status, headers.get("location")), (200, f"/kernels/{name}"))  # replaced
        self.assertEqual(self.c.request("GET", f"/kernels/{name}")["shape"], [1, 3])
        with self.assertRaises(Conflict):
            self.c.save_kernel("sobel_x", weight=[[1]])
        with self.assertRaises(Conflict):
            self.c.delete_kernel("edge")
        self.assertEqual(self.c.request("GET", "/kernels/edge")["kernel"], [[1, -1]])
        with self.assertRaises(InvalidRequest) as caught:
            self.c.save_kernel("x", from_job="j-0", weight=[[1]])
        self.assertIn("/weight", caught.exception.pointers)
        with self.assertRaises(InvalidRequest):
            self.c.save_kernel("bad name", weight=[[1]])
        self.c.delete_kernel(name)
        with self.assertRaises(NotFound):
            self.c.delete_kernel(name)
        with self.assertRaises(InvalidRequest) as caught:
            self.c.corr2d(SEED_X, name)
        self.assertIn("/kernel", caught.exception.pointers)

    def test_replies_end_with_newline(self):
        for method, path, body in (("POST", "/corr2d", {"input": SEED_X, "kernel": [[0, 1], [2, 3]]}),
                                   ("GET", "/kernels", None), ("GET", "/jobs", None), ("GET", "/healthz", None),
                                   ("POST", "/corr2d", {"input": 1}), ("GET", "/nowhere", None)):
            status, _, data = raw(self.d.url, method, path, body)
            self.assertTrue(data.endswith(b"}\n"), (method, path, status, data[-40:]))
        self.assertEqual(raw(self.d.url, "POST", "/corr2d", {"input": SEED_X, "kernel": [[0, 1], [2, 3]]})[2],
                         b'{"output":[[19,25],[37,43]]}\n')

    def test_page_security_headers(self):
        for path, mime in (("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")):
            status, h, body = raw(self.d.url, "GET", path)
            self.assertEqual(status, 200, path)
            self.assertTrue(h["content-type"].startswith(mime))
            csp = h["content-security-policy"]
            for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                              "frame-ancestors 'none'"):
                self.assertIn(directive, csp)
            self.assertNotIn("unsafe-inline", csp)
            self.assertNotIn("http", csp)  # no external origin
            self.assertEqual(h["x-content-type-options"], "nosniff")
            self.assertEqual(h["referrer-policy"], "no-referrer")
        page = raw(self.d.url, "GET", "/")[2].decode()
        self.assertFalse(re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "an inline script")
        self.assertNotIn("<style", page)
        self.assertFalse(re.search(r"\sstyle=", page), "an inline style attribute")
        self.assertFalse(re.search(r"\son[a-z]+=", page), "an inline event handler")
        self.assertFalse(re.search(r"(src|href)=\"(https?:)?//", page), "an external origin")


class StartupTests(unittest.TestCase):
    def test_start_line_port_only_and_port_in_use(self):
        first = Daemon()
        try:
            deadline = time.monotonic() + 20
            while "serving" not in first.out() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(first.out(), f"convd serving on http://127.0.0.1:{first.port}/\n")
            # "--listen PORT" means 127.0.0.1:PORT, which the first daemon holds: the second must fail.
            second = Daemon(listen=str(first.port), wait=False)
            try:
                self.assertEqual(second.proc.wait(timeout=30), 1)
                self.assertIn(f"convd: cannot listen on {first.port}: address already in use", second.log())
            finally:
                second.stop()
            with Client(first.url) as c:
                self.assertEqual(c.health(), {"status": "ok"})
        finally:
            first.stop()


if __name__ == "__main__":
    binary()
    unittest.main(verbosity=2)
