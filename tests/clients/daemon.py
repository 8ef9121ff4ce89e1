"""A convd process for the Python tests: ephemeral loopback port, log in a temp file, killed in teardown."""

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python", "src"))
CLI = os.path.join(ROOT, "clients", "cli", "convd-cli")
STARTUP_TIMEOUT = 20.0
CLI_TIMEOUT = 120.0


def _die_with_parent():
    """In the child: SIGKILL when the test process dies, so no daemon outlives a crashed test."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def binary():
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        os.environ["CONVD_BIN"] = sys.argv.pop(1)
    path = os.environ.get("CONVD_BIN", "")
    if not os.access(path, os.X_OK):
        sys.exit(f"usage: {sys.argv[0]} CONVD_BINARY (or set CONVD_BIN); got {path!r}")
    return path


class Daemon:
    """One convd on 127.0.0.1:0 (or the given --listen); stdout and stderr go to files."""

    def __init__(self, *args, env_extra=None, listen="127.0.0.1:0", wait=True):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVD_")}
        env["CONVD_STORE"] = "memory"  # each daemon its own jobs, not ./convd-data shared by all
        env.update(env_extra or {})
        self.dir = tempfile.mkdtemp(prefix="convd-test-")
        self.log_path = os.path.join(self.dir, "log")
        self.out_path = os.path.join(self.dir, "out")
        with open(self.log_path, "wb") as log, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen([os.environ["CONVD_BIN"], "--listen", listen, *args], stdout=out,
                                         stderr=log, env=env, preexec_fn=_die_with_parent)
        self.port = self._wait_for_port() if wait else 0
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def out(self):
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def _wait_for_port(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("msg") == "listening" and "port" in record:
                    return record["port"]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"convd did not start:\n{self.log()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)


def run_cli(url, *args, token=None, env_extra=None):
    """convd-cli from the source tree with the given arguments; the CompletedProcess (text output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVD_")}
    env.update(env_extra or {})
    if token is not None:
        env["CONVD_TOKEN"] = token
    return subprocess.run([sys.executable, CLI, "--url", url, *args], capture_output=True, text=True, env=env,
                          timeout=CLI_TIMEOUT)


def long_training(steps=100000):
    """A training that runs until cancelled (256x256, 100,000 steps), for tests that need a busy worker."""
    size = 256
    x = [[float((i * 7 + j * 3) % 11) for j in range(size)] for i in range(size)]
    y = [[0.0] * (size - 2) for _ in range(size - 2)]
    return {"input": x, "target": y, "kernel_size": 3, "loss": "mse", "lr": 1e-4, "steps": steps, "seed": 1,
            "report_every": steps}
