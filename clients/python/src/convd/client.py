"""The convd client: one daemon, one reused connection, retries on 503, streams without read timeouts."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from . import tensors
from .errors import ConnectionFailed, ConvdError, JobFailed

DEFAULT_URL = "http://127.0.0.1:8080"
TERMINAL = ("succeeded", "failed", "cancelled")

Tensor = Any  # nested lists, a numpy array, a torch tensor, or a {"shape", "data"|"b64"} dict
Labels = Dict[str, str]


def _encode_body(body: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON body of a request: tensor fields encoded (arrays as base64 float32), None fields left out."""
    out: Dict[str, Any] = {}
    for key, value in body.items():
        if value is None:
            continue
        if key == "bias":
            out[key] = tensors.encode_bias(value)
        elif key == "init" and isinstance(value, dict):
            out[key] = {k: (tensors.encode_bias(v) if k == "bias" else tensors.encode(v)) for k, v in value.items()}
        elif key in ("input", "target", "kernel", "weight"):
            out[key] = tensors.encode(value)
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


def _uses_arrays(*values: Any) -> bool:
    return any(tensors.is_array(v) for v in values)


def decode_result(obj: Any) -> Any:
    """A training result or done event with "weight" (and "bias" when an array) as numpy arrays when possible."""
    if isinstance(obj, dict):
        obj = dict(obj)
        for key in ("output", "weight"):
            if key in obj and obj[key] is not None:
                obj[key] = tensors.decode(obj[key])
        if isinstance(obj.get("bias"), list):
            obj["bias"] = tensors.decode(obj["bias"])
        if isinstance(obj.get("result"), dict):
            obj["result"] = decode_result(obj["result"])
    return obj


class Client:
    """A client of one convd daemon.

    url: where it listens (default ``$CONVD_URL`` or http://127.0.0.1:8080); token: bearer token (default
    ``$CONVD_TOKEN``); timeout: seconds to connect and to wait for a reply; retries: how many times a ``503`` with
    ``Retry-After`` (queue full, draining) is retried, waiting as told (at most ``max_retry_wait`` s each);
    stream_timeout: seconds a stream may stay silent (default None: no limit, since the daemon sends a heartbeat
    on quiet streams; a dead connection still ends with an error).

    The connection is kept open between calls (one per client and thread); streams get their own.
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, timeout: float = 30.0,
                 retries: int = 5, max_retry_wait: float = 30.0, stream_timeout: Optional[float] = None) -> None:
        url = url or os.environ.get("CONVD_URL") or DEFAULT_URL
        if "://" not in url:
            url = "http://" + url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self.token = token if token is not None else (os.environ.get("CONVD_TOKEN") or None)
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.stream_timeout = stream_timeout
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def close(self) -> None:
        """Closes the kept connection (of this thread); the next call opens a new one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- transport ---------------------------------------------------------------------------------------------

    def _new_connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, body: Optional[bytes], accept: str) -> Dict[str, str]:
        headers = {"Accept": accept, "User-Agent": "convd-python"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _path(self, path: str, query: Optional[Dict[str, Any]]) -> str:
        full = self._prefix + path
        if query:
            pairs = []
            for key, value in query.items():
                if value is None:
                    continue
                for v in (value if isinstance(value, (list, tuple)) else [value]):
                    pairs.append((key, str(v)))
            if pairs:
                full += "?" + urllib.parse.urlencode(pairs)
        return full

    def _unreachable(self, err: BaseException) -> ConnectionFailed:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else (str(err) or type(err).__name__)
        if isinstance(err, socket.timeout):
            reason = f"no reply within {self.timeout:g} s"
        return ConnectionFailed(0, "unreachable", f"cannot reach convd at {self.url}: {reason}")

    def _send(self, conn: http.client.HTTPConnection, method: str, path: str, data: Optional[bytes],
              accept: str) -> http.client.HTTPResponse:
        conn.request(method, path, body=data, headers=self._headers(data, accept))
        return conn.getresponse()

    def _request(self, method: str, path: str, body: Any = None, query: Optional[Dict[str, Any]] = None,
                 accept: str = "application/json", stream: bool = False) -> http.client.HTTPResponse:
        """Sends a request (retrying 503s as allowed) and returns the response, raising ConvdError on errors.

        For a stream the response is on a connection of its own, which the caller must close."""
        data = None if body is None else json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
        full = self._path(path, query)
        attempt = 0
        while True:
            try:
                if stream:
                    conn = self._new_connection(self.timeout)
                    response = self._send(conn, method, full, data, accept)
                else:
                    conn = getattr(self._local, "conn", None)
                    reused = conn is not None
                    if conn is None:
                        conn = self._local.conn = self._new_connection(self.timeout)
                    try:
                        response = self._send(conn, method, full, data, accept)
                    except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                        if not reused:
                            raise
                        conn.close()  # the kept connection was closed by the daemon meanwhile: one fresh try
                        conn = self._local.conn = self._new_connection(self.timeout)
                        response = self._send(conn, method, full, data, accept)
            except (OSError, http.client.HTTPException) as err:
                self.close()
                raise self._unreachable(err) from None
            if response.status < 400:
                if stream:
                    sock = getattr(conn, "sock", None)
                    if sock is not None:
                        sock.settimeout(self.stream_timeout)
                    response._convd_conn = conn  # type: ignore[attr-defined]
                return response
            raw = response.read()
            if stream:
                conn.close()
            retry_after = _retry_after(response.getheader("Retry-After"))
            error = ConvdError.from_reply(response.status, raw, retry_after)
            if response.status == 503 and retry_after is not None and attempt < self.retries:
                attempt += 1
                time.sleep(min(retry_after, self.max_retry_wait))
                continue
            raise error

    def request(self, method: str, path: str, body: Any = None, query: Optional[Dict[str, Any]] = None) -> Any:
        """One request with a JSON reply, returned as parsed JSON without converting tensors (None for 204)."""
        response = self._request(method, path, body, query)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as err:
            self.close()
            raise self._unreachable(err) from None
        return json.loads(raw) if raw.strip() else None

    def stream(self, method: str, path: str, body: Any = None, query: Optional[Dict[str, Any]] = None,
               heartbeats: bool = False) -> Iterator[Dict[str, Any]]:
        """The events of an NDJSON reply as they arrive (heartbeats skipped unless asked for)."""
        response = self._request(method, path, body, query, accept="application/x-ndjson", stream=True)
        conn = response._convd_conn  # type: ignore[attr-defined]
        try:
            if response.status == 204:
                return
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as err:
                    raise self._unreachable(err) from None
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                event = json.loads(line)
                if event.get("event") == "heartbeat" and not heartbeats:
                    continue
                yield event
        finally:
            conn.close()

    # -- the API -----------------------------------------------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        """GET /healthz: {"status": "ok"} while the daemon serves."""
        return self.request("GET", "/healthz")

    def corr2d(self, input: Tensor, kernel: Union[Tensor, str, Dict[str, Any]], bias: Any = None,
               padding: Any = None, stride: Any = None, dilation: Any = None, raw: bool = False) -> Any:
        """POST /corr2d: the output of cross-correlating input with kernel (as ``F.conv2d`` does).

        input: (H,W), (C,H,W) or (N,C,H,W); kernel: a tensor or a kernel name ("sobel_x", a saved one, or
        {"name": "gaussian", "size": 5}); bias: a number or one per output channel (a list or an array).
        Returns a numpy array when numpy is installed (nested lists otherwise); raw=True returns the reply dict.
        """
        body = {"input": input, "kernel": kernel, "bias": bias, "padding": padding, "stride": stride,
                "dilation": dilation}
        if tensors.HAVE_NUMPY and not raw:
            body["output_format"] = "b64"  # exact float32, no decimal text
        reply = self.request("POST", "/corr2d", _encode_body(body))
        return reply if raw else tensors.decode(reply["output"])

    def train(self, input: Tensor, target: Tensor, kernel_size: Any = None, *, progress: bool = False,
              name: Optional[str] = None, labels: Optional[Labels] = None, **options: Any) -> "Job":
        """Starts a training job (POST /jobs) and returns its Job at once.

        options are the /train fields of API.md: bias, padding, stride, dilation, init (a dict, or a kernel name),
        seed, loss, optimizer, lr, momentum, beta1, beta2, eps, steps, report_every, stop_loss. progress=True makes
        ``job.wait()`` show a progress bar (tqdm when installed). The job runs on even if this program ends.
        """
        body = dict(options, kind="train", input=input, target=target, kernel_size=kernel_size, name=name,
                    labels=labels)
        if tensors.HAVE_NUMPY:
            body.setdefault("output_format", "b64")
        info = self.request("POST", "/jobs", _encode_body(body))
        return Job(self, info, progress=progress)

    def train_sync(self, input: Tensor, target: Tensor, kernel_size: Any = None, **options: Any) -> Dict[str, Any]:
        """POST /train with "stream": false: waits, and returns the result (losses, final_loss, weight, bias)."""
        body = dict(options, input=input, target=target, kernel_size=kernel_size, stream=False)
        if tensors.HAVE_NUMPY:
            body.setdefault("output_format", "b64")
        return decode_result(self.request("POST", "/train", _encode_body(body)))

    def train_stream(self, input: Tensor, target: Tensor, kernel_size: Any = None,
                     **options: Any) -> Iterator[Dict[str, Any]]:
        """POST /train, streamed: the events (start, step..., done or error) as they arrive. Closing the generator
        early disconnects, which cancels the job on the server."""
        body = dict(options, input=input, target=target, kernel_size=kernel_size, stream=True)
        for event in self.stream("POST", "/train", _encode_body(body)):
            yield decode_result(event)

    def submit(self, kind: str = "train", **body: Any) -> "Job":
        """POST /jobs with any body ("train" or "corr2d" fields); returns the Job."""
        return Job(self, self.request("POST", "/jobs", _encode_body(dict(body, kind=kind))))

    def job(self, job_id: str) -> "Job":
        """The job with this id (GET /jobs/{id})."""
        return Job(self, self.request("GET", f"/jobs/{_quote(job_id)}"))

    def jobs(self, status: Optional[str] = None, label: Union[None, str, Sequence[str], Labels] = None,
             limit: Optional[int] = None) -> Iterator["Job"]:
        """The jobs, newest first: filtered by status, and by labels ("k=v", a list of them, or a dict; all must
        match)."""
        if isinstance(label, dict):
            label = [f"{k}={v}" for k, v in label.items()]
        reply = self.request("GET", "/jobs", query={"status": status, "label": label, "limit": limit})
        for info in reply["jobs"]:
            yield Job(self, info)

    def events(self, job_id: str, after: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """GET /jobs/{id}/events: the job's events from the start (or after event index ``after``), following it
        live until it ends. Leaving early does not cancel the job."""
        for event in self.stream("GET", f"/jobs/{_quote(job_id)}/events", query={"after": after}):
            yield decode_result(event)

    def cancel(self, job_id: str) -> Dict[str, Any]:
        """DELETE /jobs/{id}: cancels the job; returns its resource."""
        return self.request("DELETE", f"/jobs/{_quote(job_id)}")

    def kernels(self) -> List[Dict[str, Any]]:
        """GET /kernels: built-in and saved kernels, each {"name", "builtin", "kernel" or "example", ...}."""
        return self.request("GET", "/kernels")["kernels"]

    def kernel(self, name: str) -> Any:
        """A saved kernel's values (a numpy array when numpy is installed)."""
        return tensors.decode(self.request("GET", f"/kernels/{_quote(name)}")["kernel"])

    def save_kernel(self, name: str, from_job: Union[None, str, "Job"] = None, weight: Tensor = None) -> Dict[str, Any]:
        """POST /kernels: saves a finished training's kernel (from_job) or a given weight under name."""
        if isinstance(from_job, Job):
            from_job = from_job.id
        return self.request("POST", "/kernels", _encode_body({"name": name, "from_job": from_job, "weight": weight}))

    def delete_kernel(self, name: str) -> None:
        """DELETE /kernels/{name}."""
        self.request("DELETE", f"/kernels/{_quote(name)}")


class Job:
    """A job of the daemon: ``id``, ``status``, ``info`` (the last resource seen), and ways to follow it."""

    def __init__(self, client: Client, info: Dict[str, Any], progress: bool = False) -> None:
        self.client = client
        self.info = info
        self.id: str = info["id"]
        self.progress = progress
        self._done: Optional[Dict[str, Any]] = None

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.status}>"

    status = property(lambda self: self.info.get("status"), doc="The status when last seen.")
    name = property(lambda self: self.info.get("name"), doc="The name given at submission, or None.")
    labels = property(lambda self: self.info.get("labels") or {}, doc="The labels given at submission.")
    params = property(lambda self: self.info.get("params") or {}, doc="The job's settings.")

    def refresh(self, losses: bool = False) -> Dict[str, Any]:
        """Reads the resource again (with every step's loss in result.losses when losses=True)."""
        self.info = self.client.request("GET", f"/jobs/{_quote(self.id)}",
                                        query={"include": "losses" if losses else None})
        return self.info

    def events(self, after: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """The job's events (start, step..., warning, done or error), from the start, live until it ends."""
        for event in self.client.events(self.id, after=after):
            if event.get("event") in ("done", "error"):
                self._done = event
            yield event

    def cancel(self) -> Dict[str, Any]:
        """Asks the daemon to cancel the job (it stops within one step)."""
        self.info = self.client.cancel(self.id)
        return self.info

    def wait(self, progress: Optional[bool] = None) -> Dict[str, Any]:
        """Follows the job until it ends and returns its result (see result()); with progress, shows a bar."""
        show = self.progress if progress is None else progress
        bar = _Progress(self.info.get("progress", {}).get("steps") or 0) if show else None
        try:
            for event in self.events():
                if bar is not None:
                    bar.update(event)
        finally:
            if bar is not None:
                bar.close()
        return self.result()

    def result(self) -> Dict[str, Any]:
        """The result of the finished job (waiting for it to end): for a training {"status", "steps", "losses",
        "final_loss", "weight", "bias", "elapsed_ms"} with arrays, for a corr2d {"output"}. Raises JobFailed when it
        failed or was cancelled."""
        info = self.refresh(losses=True)
        if info.get("status") not in TERMINAL:
            for _ in self.events():
                pass
            info = self.refresh(losses=True)
        if info.get("status") == "failed":
            err = info.get("error") or {}
            raise JobFailed(0, err.get("code", "failed"), f"job {self.id} failed: {err.get('detail', '')}")
        if info.get("status") == "cancelled":  # the kernel as it stood is in self.info["result"]
            raise JobFailed(0, "cancelled", f"job {self.id} was cancelled")
        return decode_result(info.get("result") or {})


class _Progress:
    """A progress bar of a training: tqdm when installed, else one line redrawn with a carriage return."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.step = 0
        try:
            from tqdm import tqdm
            self.bar: Any = tqdm(total=total or None, unit="step", dynamic_ncols=True)
        except ImportError:
            self.bar = None
            self.t0 = time.monotonic()

    def update(self, event: Dict[str, Any]) -> None:
        if event.get("event") == "start":
            self.total = event.get("steps") or self.total
            if self.bar is not None and self.total:
                self.bar.total = self.total
        if event.get("event") != "step":
            return
        step = int(event["step"])
        if self.bar is not None:
            self.bar.update(step - self.step)
            self.bar.set_postfix(loss=f"{event.get('loss')}", refresh=False)
        else:
            rate = step / max(time.monotonic() - self.t0, 1e-9)
            eta = (self.total - step) / rate if rate > 0 else 0
            print(f"\rstep {step}/{self.total}  loss {event.get('loss')}  {rate:.0f} steps/s  ETA {eta:.0f}s  ",
                  end="", flush=True)
        self.step = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            print()


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")
