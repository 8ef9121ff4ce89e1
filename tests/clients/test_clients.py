#!/usr/bin/env python3
"""The Python package (clients/python, `from convd import Client`) and convd-cli against a real convd: arrays in
every form (nested, numpy, torch, b64), images and .npy files in and out, jobs with progress, retries on 503, a
stream quieter than the read timeout, errors, the CLI's exit codes and output, and an offline pip install.

usage: test_clients.py CONVD_BINARY [unittest options]
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from contextlib import redirect_stderr

from daemon import ROOT, Daemon, binary, long_training, run_cli

import convd  # noqa: E402
from convd import (Busy, Client, ConnectionFailed, ConvdError, InvalidRequest, JobFailed, load_image,  # noqa: E402
                   save_image)
from convd import client as client_module  # noqa: E402

import numpy as np  # Debian's python3-numpy, python3-pil, python3-tqdm, python3-torch (tools/test-packages.txt)
import torch
from PIL import Image

SEED_X = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
SEED_K = [[0, 1], [2, 3]]
SEED_Y = [[19, 25], [37, 43]]
with open(os.path.join(ROOT, "clients", "examples", "train-seed.json"), encoding="utf-8") as _f:
    SEED = json.load(_f)
SEED_OPTS = {k: v for k, v in SEED.items() if k not in ("input", "target")}
STEP20_LOSS = 0.3507310
WEIGHT = 0.77563274


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--heartbeat", "0.2")
        cls.c = Client(cls.d.url, timeout=60)
        cls.tmp = tempfile.mkdtemp(prefix="convd-clients-")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.d.stop()
        shutil.rmtree(cls.tmp)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def cli(self, *args, **kw):
        r = run_cli(self.d.url, *args, **kw)
        self.assertNotIn("Traceback", r.stderr)
        return r


class LibraryTests(Base):
    def test_version_and_exports(self):
        self.assertRegex(convd.__version__, r"^\d+\.\d+\.\d+$")
        self.assertTrue(os.path.isfile(os.path.join(os.path.dirname(convd.__file__), "py.typed")))

    def test_corr2d_forms(self):
        y = self.c.corr2d(SEED_X, SEED_K)
        self.assertIsInstance(y, np.ndarray)
        np.testing.assert_array_equal(y, np.array(SEED_Y, np.float32))
        self.assertEqual(self.c.corr2d(SEED_X, SEED_K, raw=True), {"output": SEED_Y})
        x = np.arange(9, dtype=np.float64).reshape(3, 3)
        np.testing.assert_array_equal(self.c.corr2d(x, np.array(SEED_K)), SEED_Y)
        np.testing.assert_array_equal(self.c.corr2d(torch.arange(9.).reshape(3, 3), torch.tensor(SEED_K)), SEED_Y)
        w = torch.tensor([[0., 1.], [2., 3.]], requires_grad=True)  # detached for sending
        np.testing.assert_array_equal(self.c.corr2d(x, w), SEED_Y)
        b64 = {"shape": [3, 3], "dtype": "float32", "b64": __import__("base64").b64encode(
            np.arange(9, dtype="<f4").tobytes()).decode()}
        np.testing.assert_array_equal(self.c.corr2d(b64, SEED_K), SEED_Y)

    def test_corr2d_matches_torch_with_array_bias(self):
        rng = np.random.default_rng(3)
        x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
        k = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
        b = rng.standard_normal(4).astype(np.float32)
        got = self.c.corr2d(x, k, bias=b, padding=1, stride=[1, 2])
        want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(k), torch.from_numpy(b), padding=1,
                                          stride=(1, 2)).numpy()
        self.assertEqual(got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(self.c.corr2d(torch.from_numpy(x), torch.from_numpy(k),
                                                 bias=torch.from_numpy(b), padding=1, stride=[1, 2]), want,
                                   rtol=1e-4, atol=1e-4)

    def test_images(self):
        rgb = np.stack([np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40)] * 3)
        rgb[1] = 1 - rgb[1]
        save_image(rgb, self.path("rgb.png"))
        with Image.open(self.path("rgb.png")) as im:
            self.assertEqual((im.mode, im.size), ("RGB", (40, 30)))
        back = load_image(self.path("rgb.png"))
        self.assertEqual((back.dtype, back.shape), (np.float32, (3, 30, 40)))
        np.testing.assert_allclose(back, rgb, atol=1 / 255)
        Image.fromarray((np.arange(48).reshape(6, 8) * 5).astype(np.uint8)).save(self.path("g.jpg"), quality=100)
        gray = load_image(self.path("g.jpg"))
        self.assertEqual(gray.shape, (1, 6, 8))
        edges = self.c.corr2d(back, "sobel_x", padding="same")  # per channel on an RGB image
        self.assertEqual(edges.shape, (3, 30, 40))
        save_image(edges, self.path("edges.png"), normalize=True)
        self.assertEqual(load_image(self.path("edges.png")).shape, (3, 30, 40))
        save_image(edges[0], self.path("edges.jpg"), normalize=True)  # through Pillow
        self.assertEqual(load_image(self.path("edges.jpg")).shape, (1, 30, 40))

    def test_train_job_wait_result_and_progress(self):
        job = self.c.train(SEED["input"], SEED["target"], name="lib", labels={"suite": "lib"}, progress=True,
                           **SEED_OPTS)
        self.assertEqual((job.name, job.labels, job.params["lr"]), ("lib", {"suite": "lib"}, 0.012))
        err = io.StringIO()
        with redirect_stderr(err):  # tqdm draws on stderr
            result = job.wait()
        self.assertIn("20/20", err.getvalue())
        self.assertAlmostEqual(result["losses"][19], STEP20_LOSS, places=5)
        np.testing.assert_allclose(result["weight"], [[WEIGHT, -WEIGHT]], rtol=1e-5)
        self.assertIsNone(result["bias"])
        events = [e["event"] for e in job.events()]
        self.assertEqual((events[0], events[-1], events.count("step")), ("start", "done", 20))
        self.assertIn(job.id, [j.id for j in self.c.jobs(label={"suite": "lib"})])
        np.testing.assert_allclose(self.c.job(job.id).result()["weight"], result["weight"])

    def test_train_with_torch_and_bias(self):
        x = torch.tensor(SEED["input"], dtype=torch.float32)
        y = torch.tensor(SEED["target"], dtype=torch.float32)
        result = self.c.train(x, y, kernel_size=[1, 2], lr=0.012, steps=30, seed=5).wait()
        self.assertEqual(result["steps"], 30)
        self.assertEqual(result["weight"].shape, (1, 2))
        sync = self.c.train_sync(x, y, kernel_size=[1, 2], lr=0.012, steps=30, seed=5)
        np.testing.assert_allclose(sync["weight"], result["weight"], rtol=1e-6)

    def test_failed_job_raises(self):
        job = self.c.train(SEED_X, SEED_Y, kernel_size=2, steps=40, lr=1.0, seed=1)
        with self.assertRaises(JobFailed) as caught:
            job.wait()
        self.assertEqual(caught.exception.code, "diverged")
        self.assertIn("warning", [e["event"] for e in job.events()])  # loss_rising came first

    def test_cancel(self):
        job = self.c.train(**long_training())
        job.cancel()
        with self.assertRaises(JobFailed):
            job.wait()
        self.assertIn(job.status, ("cancelled",))

    def test_error_text_has_every_field(self):
        with self.assertRaises(InvalidRequest) as caught:
            self.c.request("POST", "/train", {"input": SEED_X, "target": "x", "lr": -1, "kernel_size": 2})
        e = caught.exception
        self.assertEqual((e.status, e.code), (422, "invalid_field"))
        self.assertEqual(set(e.pointers), {"/target", "/lr"})
        for pointer in e.pointers:
            self.assertIn(pointer, str(e))
        self.assertIsInstance(e, ConvdError)
        with self.assertRaises(ConvdError) as caught:
            self.c.corr2d([[0, 1], [2]], SEED_K)
        self.assertIn("/input/1", str(caught.exception))

    def test_unreachable(self):
        with self.assertRaises(ConnectionFailed) as caught:
            Client("http://127.0.0.1:1", timeout=5).health()
        self.assertEqual((caught.exception.status, caught.exception.code), (0, "unreachable"))

    def test_connection_reuse(self):
        c = Client(self.d.url, timeout=30)
        c.health()
        first = c._local.conn.sock
        for _ in range(5):
            c.corr2d(SEED_X, SEED_K)
        self.assertIs(c._local.conn.sock, first)
        c.close()


class BusyTests(unittest.TestCase):
    """Retries on 503 with Retry-After, against a daemon with one worker and a queue of one."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--workers", "1", "--queue", "1", "--heartbeat", "0.2")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_retries_until_the_queue_frees(self):
        c = Client(self.d.url, timeout=60)
        running = c.train(**long_training())
        queued = c.train(**long_training())
        big = long_training()
        big["steps"] = 5
        with self.assertRaises(Busy) as caught:
            Client(self.d.url, retries=0).train(**big)
        self.assertEqual((caught.exception.status, caught.exception.code), (503, "queue_full"))
        self.assertGreater(caught.exception.retry_after, 0)
        # A client that retries: on its first wait, the queue is freed; the retry then gets in.
        slept = []
        real_sleep = client_module.time.sleep

        def sleep(seconds):
            slept.append(seconds)
            if len(slept) == 1:
                queued.cancel()
                running.cancel()
            real_sleep(min(seconds, 0.2))

        client_module.time.sleep = sleep
        try:
            job = Client(self.d.url, retries=50).train(**big)
        finally:
            client_module.time.sleep = real_sleep
        self.assertGreaterEqual(len(slept), 1)
        self.assertEqual(job.wait()["steps"], 5)

    def test_quiet_stream_outlives_the_read_timeout(self):
        """A job queued behind a long one is silent for longer than the client's timeout: heartbeats keep it."""
        steady = Client(self.d.url, timeout=60)
        blocker = steady.train(**long_training())
        small = steady.train(SEED["input"], SEED["target"], **SEED_OPTS)
        c = Client(self.d.url, timeout=1.0)  # connect and reply timeout; streams have none between events
        timer = threading.Timer(4.0, blocker.cancel)  # 4x the read timeout of quiet first
        timer.start()
        try:
            t0 = time.monotonic()
            events = [e["event"] for e in c.events(small.id)]
            self.assertGreater(time.monotonic() - t0, 2.0)
        finally:
            timer.cancel()
            blocker.cancel()
            steady.close()
        self.assertEqual((events[0], events[-1]), ("start", "done"))
        c.close()


class CliTests(Base):
    def test_corr2d_inline_and_b64(self):
        r = self.cli("corr2d", json.dumps(SEED_X), json.dumps(SEED_K))
        self.assertEqual((r.returncode, r.stdout), (0, '{"output":[[19,25],[37,43]]}\n'), r.stderr)
        r = self.cli("corr2d", json.dumps(SEED_X), json.dumps(SEED_K), "--output-format", "b64")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["output"]["dtype"], "float32")

    def test_corr2d_files_in_and_out(self):
        np.save(self.path("x.npy"), np.arange(9, dtype=np.float32).reshape(3, 3))
        r = self.cli("corr2d", "@" + self.path("x.npy"), json.dumps(SEED_K), "-o", self.path("y.npy"))
        self.assertEqual(r.returncode, 0, r.stderr)
        np.testing.assert_array_equal(np.load(self.path("y.npy")), SEED_Y)
        save_image(np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(1, 48, 64), self.path("in.png"))
        r = self.cli("corr2d", "-i", self.path("in.png"), "-k", "sobel_x", "--padding", "same", "-o",
                     self.path("out.png"), "--normalize")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(load_image(self.path("out.png")).shape, (1, 48, 64))
        r = self.cli("corr2d", "@" + self.path("in.png"), "edge", "-o", self.path("out.json"))
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.path("out.json")) as f:
            self.assertEqual(np.array(json.load(f)).shape, (1, 48, 63))

    def test_did_you_mean_at_file(self):
        with open(self.path("x.json"), "w") as f:
            json.dump(SEED_X, f)
        r = self.cli("corr2d", self.path("x.json"), json.dumps(SEED_K))
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"did you mean @{self.path('x.json')}", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        r = self.cli("train", os.path.join(ROOT, "clients", "examples", "train-seed.json"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("did you mean @", r.stderr)

    def test_exit_codes(self):
        r = self.cli("corr2d", "[[0,1],[2,3]]", "sobel_x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("422 shape_mismatch", r.stderr)
        self.assertIn("/kernel", r.stderr)
        for args in (["corr2d"], ["nope"], ["corr2d", "[[1]", "[[1]]"], ["train", "--steps", "x"], []):
            r = self.cli(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        r = run_cli("http://127.0.0.1:1", "health")
        self.assertEqual(r.returncode, 3)
        self.assertIn("cannot reach convd", r.stderr)
        r = self.cli("job", "j-00000000000000000000000000000000")
        self.assertEqual(r.returncode, 1)

    def test_version_and_help(self):
        r = self.cli("--version")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, f"convd-cli {convd.__version__}"))
        for command in ("corr2d", "train", "submit", "jobs", "job", "watch", "cancel", "kernels", "health"):
            r = self.cli(command, "--help")
            self.assertEqual(r.returncode, 0, command)
            self.assertIn("usage:", r.stdout)

    def test_train_plain_lines(self):
        body = "@" + os.path.join(ROOT, "clients", "examples", "train-seed.json")
        r = self.cli("train", body, "--steps", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "step 1/3  loss 34.5")
        self.assertTrue(lines[3].startswith("succeeded  steps 3  final_loss 3.90290"))
        self.assertTrue(lines[4].startswith("kernel [[0.1759"))
        r = self.cli("train", body, "--json", "-o", self.path("k.npy"), "--save-kernel", "cli_edge")
        events = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual((events[0]["event"], events[-1]["event"], len(events)), ("start", "done", 22))
        r = self.cli("train", body, "-o", self.path("k.npy"), "--save-kernel", "cli_edge")
        self.assertEqual(r.returncode, 0, r.stderr)
        np.testing.assert_allclose(np.load(self.path("k.npy")), [[WEIGHT, -WEIGHT]], rtol=1e-5)
        r = self.cli("kernels")
        self.assertRegex(r.stdout, r"cli_edge\s+saved from j-")
        r = self.cli("kernels", "get", "cli_edge", "-o", self.path("k2.json"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.cli("kernels", "delete", "cli_edge").returncode, 0)
        self.assertEqual(self.cli("kernels", "delete", "cli_edge").returncode, 1)

    def test_train_from_files(self):
        np.save(self.path("ex.npy"), np.array(SEED["input"], np.float32))
        np.save(self.path("ey.npy"), np.array(SEED["target"], np.float32))
        r = self.cli("train", "-i", self.path("ex.npy"), "-t", self.path("ey.npy"), "--kernel-size", "[1,2]",
                     "--no-bias", "--lr", "0.012", "--steps", "20", "--init", "[[0.5,0.5]]")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("step 20/20  loss 0.35073", r.stdout)

    def test_train_failure_exit_1(self):
        r = self.cli("train", "-i", json.dumps(SEED_X), "-t", json.dumps(SEED_Y), "--kernel-size", "2", "--lr", "1",
                     "--steps", "40", "--seed", "1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("diverged", r.stderr)
        self.assertIn("loss_rising", r.stderr)

    def test_submit_jobs_job_watch_cancel(self):
        body = "@" + os.path.join(ROOT, "clients", "examples", "train-seed.json")
        r = self.cli("submit", body, "--name", "cli-run", "--label", "suite=cli")
        self.assertEqual(r.returncode, 0, r.stderr)
        job_id = r.stdout.strip()
        self.assertRegex(job_id, r"^j-[0-9a-f]{32}$")
        r = self.cli("watch", job_id)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("step 20/20", r.stdout)
        r = self.cli("jobs", "--label", "suite=cli")
        header, row = r.stdout.splitlines()[:2]
        self.assertEqual(header.split(), ["ID", "KIND", "STATUS", "AGE", "STEPS", "LOSS", "NAME", "SETTINGS"])
        self.assertTrue(row.startswith(job_id))
        for part in ("succeeded", "20/20", "cli-run", "1x2", "sgd", "lr=0.012"):
            self.assertIn(part, row)
        r = self.cli("job", job_id)
        self.assertIn("status    succeeded", r.stdout)
        self.assertNotIn("losses", r.stdout)
        r = self.cli("job", job_id, "--losses")
        self.assertIn("losses    [34.5,", r.stdout)
        long_id = self.cli("submit", "@" + self._long_body()).stdout.strip()
        r = self.cli("cancel", long_id)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, f"{long_id} (cancelling|cancelled)")

    def test_ctrl_c_cancels_on_the_server(self):
        tag = f"sigint{os.getpid()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVD_")}
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "clients", "cli", "convd-cli"), "--url", self.d.url,
                                 "train", "@" + self._long_body(), "--label", f"t={tag}"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 60
            jobs = []
            while time.monotonic() < deadline and not jobs:
                jobs = [j for j in self.c.jobs(label=f"t={tag}") if j.status == "running"]
                time.sleep(0.05)
            self.assertTrue(jobs, "the CLI's job never ran")
            time.sleep(1.0)  # the CLI has its reply (sent before the job could run) and follows the events
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 130, err)
        self.assertNotIn("Traceback", err)
        self.assertIn(f"cancelled {jobs[0].id}", err)
        self.assertIn(self.c.job(jobs[0].id).status, ("cancelling", "cancelled"))

    def _long_body(self):
        path = self.path("long.json")
        if not os.path.exists(path):
            with open(path, "w") as f:
                json.dump(long_training(), f)
        return path

    def test_token(self):
        d = Daemon(env_extra={"CONVD_TOKEN": "secret"})
        try:
            with self.assertRaises(ConvdError) as caught:
                Client(d.url, token="").corr2d(SEED_X, SEED_K)
            self.assertEqual(caught.exception.status, 401)
            np.testing.assert_array_equal(Client(d.url, token="secret").corr2d(SEED_X, SEED_K), SEED_Y)
            self.assertEqual(run_cli(d.url, "health").returncode, 0)  # probes are public
            self.assertEqual(run_cli(d.url, "corr2d", "[[1]]", "[[1]]").returncode, 1)
            self.assertEqual(run_cli(d.url, "corr2d", "[[1]]", "[[1]]", token="secret").returncode, 0)
        finally:
            d.stop()


class InstallTests(unittest.TestCase):
    def test_offline_pip_install(self):
        """pip install --no-index --no-build-isolation into a venv of Debian's python3 with system packages."""
        tmp = tempfile.mkdtemp(prefix="convd-pip-")
        try:
            src = os.path.join(tmp, "src")  # a copy: the build writes into the source directory
            shutil.copytree(os.path.join(ROOT, "clients", "python"), src,
                            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            venv = os.path.join(tmp, "venv")
            subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv], check=True,
                           timeout=300, capture_output=True)
            r = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--no-index", "--no-build-isolation",
                                "--quiet", src], capture_output=True, text=True, timeout=600)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = subprocess.run([os.path.join(venv, "bin", "convd-cli"), "--version"], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.stdout.strip(), f"convd-cli {convd.__version__}", r.stderr)
            r = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                                "import convd, os; from convd import Client; print(convd.__file__); "
                                "print(os.path.isfile(os.path.join(os.path.dirname(convd.__file__), 'py.typed')))"],
                               capture_output=True, text=True, timeout=60, cwd=tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(venv, r.stdout.splitlines()[0])
            self.assertEqual(r.stdout.splitlines()[1], "True")
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    binary()
    unittest.main(verbosity=2)
