#!/usr/bin/env python3
"""Tests of the Python client (clients/python) and the CLI (clients/cli) against a real convd.

usage: test_clients.py CONVD_BINARY [unittest options]   (or set CONVD_BIN and give no binary)

Starts two daemons on ephemeral loopback ports: one open, one with CONVD_TOKEN=secret. Exits non-zero when a test
fails, after unittest's summary.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import types
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from convd_client import Client, ConvdError  # noqa: E402

CLI = os.path.join(ROOT, "clients", "cli", "convd-cli")
CONVD_BIN = os.environ.get("CONVD_BIN")
STARTUP_TIMEOUT = 10.0  # seconds for convd to print its "listening" line
CLI_TIMEOUT = 60.0  # seconds for one CLI run: bounded, so that a hang fails the test instead of ctest's whole run

# The textbook seed (../shared/seed/): corr2d of a 3x3 input with a 2x2 kernel, and the 6x8 edge image.
SEED_X = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
SEED_K = [[0, 1], [2, 3]]
SEED_Y = [[19, 25], [37, 43]]
with open(os.path.join(ROOT, "clients", "examples", "train-seed.json"), encoding="utf-8") as _f:
    TRAIN_SEED = json.load(_f)  # the 6x8 image, its edges, init [[0.5,0.5]], lr 0.012, 20 steps, no bias
EDGE_X = TRAIN_SEED["input"]
EDGE_Y = TRAIN_SEED["target"]
STEP20_LOSS = 0.3507310  # PyTorch's loss at step 20 of the seed training


class Daemon:
    """One convd process on 127.0.0.1:0; its stderr goes to a file (a pipe left unread could fill and block it)."""

    def __init__(self, binary, env_extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVD_")}
        env.update(env_extra or {})
        self.log = tempfile.NamedTemporaryFile(prefix="convd-", suffix=".log")
        self.proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0"], stdout=subprocess.DEVNULL,
                                     stderr=self.log, env=env)
        self.port = self._wait_for_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _wait_for_port(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with open(self.log.name, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("msg") == "listening" and "port" in record:
                        return record["port"]
            time.sleep(0.05)
        self.stop()
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            raise RuntimeError(f"convd did not start:\n{f.read()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def run_cli(url, *args, token=None):
    """Runs convd-cli with the given arguments against url; returns the CompletedProcess (text output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVD_")}
    if token is not None:
        env["CONVD_TOKEN"] = token
    return subprocess.run([sys.executable, CLI, "--url", url, *args], capture_output=True, text=True, env=env,
                          timeout=CLI_TIMEOUT)


def long_training():
    """A training that takes many seconds (256x256 input, 100000 steps), for tests that must catch a job running."""
    size = 256
    x = [[float((i * 7 + j * 3) % 11) for j in range(size)] for i in range(size)]
    y = [[0.0] * (size - 2) for _ in range(size - 2)]
    return {"input": x, "target": y, "kernel_size": 3, "loss": "mse", "lr": 1e-4, "steps": 100000,
            "seed": 1}


class ClientTests(unittest.TestCase):
    """Through the library and the CLI, against the open daemon."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(CONVD_BIN)
        cls.client = Client(cls.daemon.url, token="", timeout=30)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def cli(self, *args):
        return run_cli(self.daemon.url, *args)

    # -- corr2d ------------------------------------------------------------------------------------------------

    def test_corr2d_seed(self):
        self.assertEqual(self.client.corr2d(SEED_X, SEED_K), {"output": SEED_Y})

    def test_corr2d_edge(self):
        out = self.client.corr2d(EDGE_X, "edge")["output"]
        self.assertEqual(out, EDGE_Y)

    def test_corr2d_numpy(self):
        try:
            import numpy as np
        except ImportError:
            self.skipTest("numpy is not installed")
        out = self.client.corr2d(np.arange(9, dtype=np.float32).reshape(3, 3), np.array(SEED_K))["output"]
        self.assertIsInstance(out, np.ndarray)
        self.assertEqual(out.tolist(), SEED_Y)

    def test_cli_corr2d_seed(self):
        r = self.cli("corr2d", json.dumps(SEED_X), json.dumps(SEED_K))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), '{"output":[[19,25],[37,43]]}')

    def test_cli_corr2d_named_kernel_from_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(EDGE_X, f)
            f.flush()
            r = self.cli("corr2d", "@" + f.name, "--kernel", "edge")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"output": EDGE_Y})

    def test_cli_corr2d_options(self):
        r = self.cli("corr2d", json.dumps(SEED_X), json.dumps(SEED_K), "--padding", "1", "--stride", "2",
                     "--bias", "0.5")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"output": [[0.5, 8.5], [21.5, 43.5]]})

    # -- training ----------------------------------------------------------------------------------------------

    def seed_training(self):
        return dict(kernel_size=[1, 2], bias=False, lr=0.012, steps=20, init={"weight": [[0.5, 0.5]]})

    def test_train_streams_the_seed(self):
        events = self.client.train(EDGE_X, EDGE_Y, **self.seed_training())
        self.assertIsInstance(events, types.GeneratorType)
        start = next(events)
        self.assertEqual(start["event"], "start")
        rest = list(events)
        steps = [e for e in rest if e["event"] == "step"]
        self.assertEqual([e["step"] for e in steps], list(range(1, 21)))
        self.assertEqual(steps[0]["loss"], 34.5)
        self.assertAlmostEqual(steps[-1]["loss"] / STEP20_LOSS, 1.0, delta=1e-4)
        done = rest[-1]
        self.assertEqual((done["event"], done["status"]), ("done", "succeeded"))
        self.assertIsNone(done["bias"])
        self.assertEqual(len(done["weight"]), 1)
        self.assertEqual(len(done["weight"][0]), 2)

    def test_train_events_arrive_while_it_runs(self):
        # The first step must come while the job still runs, and leaving the stream early cancels the job:
        # together these show the generator reads the reply line by line rather than after it ends.
        events = self.client.train(**long_training())
        start = next(events)
        step = next(events)
        self.assertEqual(step["event"], "step")
        events.close()
        job = self.wait_for(start["job"], {"cancelled"})
        self.assertLess(job["progress"]["step"], 100000)

    def test_train_sync(self):
        reply = self.client.train_sync(EDGE_X, EDGE_Y, **self.seed_training())
        self.assertEqual(reply["status"], "succeeded")
        self.assertEqual(len(reply["losses"]), 20)
        self.assertEqual(reply["losses"][0], 34.5)
        self.assertAlmostEqual(reply["losses"][-1] / STEP20_LOSS, 1.0, delta=1e-4)

    def test_cli_train_prints_steps(self):
        r = self.cli("train", "@" + os.path.join(ROOT, "clients", "examples", "train-seed.json"))
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "step 1  loss 34.5")
        self.assertTrue(lines[19].startswith("step 20  loss "), lines[19])
        self.assertAlmostEqual(float(lines[19].split()[-1]) / STEP20_LOSS, 1.0, delta=1e-4)
        self.assertTrue(any(line.startswith("kernel [[") for line in lines[20:]), r.stdout)

    def test_cli_train_flags_and_json(self):
        r = self.cli("train", "--input", json.dumps(EDGE_X), "--target", json.dumps(EDGE_Y), "--kernel-size",
                     "[1,2]", "--no-bias", "--lr", "0.012", "--steps", "20", "--init", "[[0.5,0.5]]", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        events = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(events[0]["event"], "start")
        self.assertEqual(events[1], {**events[1], "event": "step", "step": 1, "loss": 34.5})
        self.assertEqual(events[-1]["status"], "succeeded")

    # -- jobs --------------------------------------------------------------------------------------------------

    def wait_for(self, job_id, statuses, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            job = self.client.job(job_id)
            if job["status"] in statuses or time.monotonic() > deadline:
                self.assertIn(job["status"], statuses)
                return job
            time.sleep(0.05)

    def test_job_round_trip(self):
        body = dict(self.seed_training(), input=EDGE_X, target=EDGE_Y)
        job = self.client.submit_job("train", **body)
        self.assertEqual(job["status"], "queued")
        done = self.wait_for(job["id"], {"succeeded"})
        self.assertEqual(done["result"]["losses"][0], 34.5)
        events = list(self.client.events(job["id"]))
        self.assertEqual([e["event"] for e in events], ["start"] + ["step"] * 20 + ["done"])
        self.assertEqual([e["event"] for e in self.client.events(job["id"], after=20)], ["done"])
        self.assertEqual(list(self.client.events(job["id"], after=21)), [])  # 204: nothing left
        self.assertIn(job["id"], [j["id"] for j in self.client.jobs(status="succeeded", limit=1000)])
        self.assertEqual(self.client.cancel(job["id"])["status"], "succeeded")  # already finished: unchanged

        r = run_cli(self.daemon.url, "job", job["id"])
        self.assertEqual((r.returncode, json.loads(r.stdout)["status"]), (0, "succeeded"), r.stderr)
        r = run_cli(self.daemon.url, "events", job["id"], "--after", "20")
        self.assertEqual([json.loads(line)["event"] for line in r.stdout.splitlines()], ["done"])
        r = run_cli(self.daemon.url, "jobs")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(job["id"], r.stdout)

    def test_job_cancel(self):
        job = self.client.submit_job("train", **long_training())
        self.wait_for(job["id"], {"running"})
        r = run_cli(self.daemon.url, "cancel", job["id"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(json.loads(r.stdout)["status"], {"cancelling", "cancelled"})
        # The events of a cancelled job end with done/cancelled, carrying the kernel as it stood.
        last = list(self.client.events(job["id"]))[-1]
        self.assertEqual((last["event"], last["status"]), ("done", "cancelled"))
        self.assertIsNotNone(last["weight"])
        self.assertEqual(self.wait_for(job["id"], {"cancelled"})["status"], "cancelled")

    def test_corr2d_job(self):
        job = self.client.submit_job("corr2d", input=SEED_X, kernel=SEED_K)
        self.assertEqual(self.wait_for(job["id"], {"succeeded"})["result"], {"output": SEED_Y})

    # -- errors and the rest -----------------------------------------------------------------------------------

    def test_ragged_input_is_a_convd_error(self):
        with self.assertRaises(ConvdError) as caught:
            self.client.corr2d([[0, 1], [2]], SEED_K)
        e = caught.exception
        self.assertEqual((e.status, e.code), (422, "invalid_field"))
        self.assertEqual(e.pointers, ["/input/1"])
        self.assertTrue(e.detail)

    def test_cli_ragged_input_exits_1(self):
        r = self.cli("corr2d", "[[0,1],[2]]", json.dumps(SEED_K))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertIn("invalid_field", r.stderr)
        self.assertIn("/input/1", r.stderr)

    def test_cli_usage_errors_exit_2(self):
        self.assertEqual(self.cli("corr2d", json.dumps(SEED_X)).returncode, 2)  # no kernel
        self.assertEqual(self.cli("corr2d", "[[0,1", json.dumps(SEED_K)).returncode, 2)  # bad JSON
        self.assertEqual(self.cli("no-such-command").returncode, 2)

    def test_train_error_raises_before_streaming(self):
        with self.assertRaises(ConvdError) as caught:
            list(self.client.train(EDGE_X, EDGE_Y, kernel_size=[1, 2], step=20))  # typo: unknown field
        self.assertEqual(caught.exception.code, "unknown_field")

    def test_unknown_job(self):
        with self.assertRaises(ConvdError) as caught:
            self.client.job("j-does-not-exist")
        self.assertEqual(caught.exception.status, 404)
        self.assertEqual(run_cli(self.daemon.url, "job", "j-does-not-exist").returncode, 1)

    def test_health_and_kernels(self):
        self.assertEqual(self.client.health(), {"status": "ok"})
        names = [k["name"] for k in self.client.kernels()["kernels"]]
        self.assertIn("edge", names)
        for command in ("health", "kernels"):
            r = self.cli(command)
            self.assertEqual(r.returncode, 0, r.stderr)
            json.loads(r.stdout)

    def test_unreachable_daemon(self):
        with self.assertRaises(ConvdError) as caught:
            Client("http://127.0.0.1:1", timeout=5).health()
        self.assertEqual(caught.exception.code, "unreachable")


class TokenTests(unittest.TestCase):
    """Against a daemon started with CONVD_TOKEN=secret."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(CONVD_BIN, {"CONVD_TOKEN": "secret"})

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def test_without_token_is_401(self):
        with self.assertRaises(ConvdError) as caught:
            Client(self.daemon.url, token="", timeout=10).corr2d(SEED_X, SEED_K)
        self.assertEqual(caught.exception.status, 401)
        r = run_cli(self.daemon.url, "corr2d", json.dumps(SEED_X), json.dumps(SEED_K))
        self.assertEqual(r.returncode, 1)
        self.assertIn("401", r.stderr)

    def test_wrong_token_is_401(self):
        with self.assertRaises(ConvdError) as caught:
            Client(self.daemon.url, token="wrong", timeout=10).kernels()
        self.assertEqual(caught.exception.status, 401)

    def test_with_token(self):
        client = Client(self.daemon.url, token="secret", timeout=10)
        self.assertEqual(client.corr2d(SEED_X, SEED_K), {"output": SEED_Y})
        r = run_cli(self.daemon.url, "--token", "secret", "corr2d", json.dumps(SEED_X), json.dumps(SEED_K))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, '{"output":[[19,25],[37,43]]}'), r.stderr)

    def test_token_from_environment(self):
        saved = os.environ.get("CONVD_TOKEN")
        os.environ["CONVD_TOKEN"] = "secret"
        try:
            self.assertEqual(Client(self.daemon.url, timeout=10).corr2d(SEED_X, SEED_K), {"output": SEED_Y})
        finally:
            if saved is None:
                del os.environ["CONVD_TOKEN"]
            else:
                os.environ["CONVD_TOKEN"] = saved
        r = run_cli(self.daemon.url, "corr2d", json.dumps(SEED_X), json.dumps(SEED_K), token="secret")
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    # The first argument, when it is not a unittest option, is the convd binary.
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        CONVD_BIN = sys.argv.pop(1)
    if not CONVD_BIN or not os.access(CONVD_BIN, os.X_OK):
        sys.exit(f"usage: {sys.argv[0]} CONVD_BINARY (or set CONVD_BIN); got {CONVD_BIN!r}")
    unittest.main(verbosity=2)
