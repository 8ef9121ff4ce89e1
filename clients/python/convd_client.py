"""A small Python client for convd, the 2-D cross-correlation and kernel-learning daemon.

Standard library only. The contract it follows is API.md at the root of the repository.

    >>> from convd_client import Client
    >>> c = Client("http://127.0.0.1:8080")
    >>> c.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]])
    {'output': [[19, 25], [37, 43]]}
    >>> for event in c.train(X, Y, kernel_size=[1, 2], bias=False, lr=0.012, steps=20):
    ...     print(event["event"], event.get("loss"))

Tensors go out as given (nested lists, or the {"shape","data"} / {"shape","dtype","b64"} dicts of API.md). When numpy
is importable, numpy arrays are accepted too: they are sent as base64 float32 (no decimal text to print or parse), and
since the daemon answers in the form of the request's input, tensors in the reply come back as numpy arrays.
"""

import base64
import json
import os
import struct
import urllib.error
import urllib.parse
import urllib.request

try:  # numpy is optional: everything but the array conversions works without it.
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the machine
    _np = None

__all__ = ["Client", "ConvdError", "encode_tensor", "decode_tensor"]

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 30.0


class ConvdError(Exception):
    """An error reply of convd (RFC 9457 problem+json), or a failure to reach it.

    Attributes: status (HTTP status, 0 when no reply arrived), code (the stable machine-readable code, which callers
    should match rather than the text), detail (human-readable text), pointers (JSON pointers of the bad fields),
    errors (the problem's "errors" list as sent) and problem (the whole decoded problem object, or {}).
    """

    def __init__(self, status, code, detail, errors=None, problem=None):
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = list(errors or [])
        self.pointers = [e.get("pointer") for e in self.errors if isinstance(e, dict) and e.get("pointer")]
        self.problem = problem or {}
        super().__init__(f"{status} {code}: {detail}")

    @classmethod
    def from_body(cls, status, body):
        """Builds the error from a reply body, tolerating bodies that are not problem+json (e.g. a proxy's page)."""
        try:
            problem = json.loads(body)
            if not isinstance(problem, dict):
                raise ValueError
        except ValueError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
            return cls(status, "http_error", text.strip() or f"HTTP {status}")
        return cls(status, problem.get("code", "http_error"), problem.get("detail") or problem.get("title", ""),
                   problem.get("errors"), problem)


def _is_numpy(value):
    return _np is not None and isinstance(value, _np.ndarray)


def encode_tensor(value):
    """Returns the JSON form of a tensor: numpy arrays become base64 little-endian float32, anything else is as is."""
    if _is_numpy(value):
        array = _np.ascontiguousarray(value, dtype="<f4")
        return {"shape": list(array.shape), "dtype": "float32", "b64": base64.b64encode(array.tobytes()).decode("ascii")}
    return value


def decode_tensor(value):
    """Turns a base64 tensor of a reply into a numpy array (or nested lists without numpy); other values pass through."""
    if not (isinstance(value, dict) and "b64" in value and "shape" in value):
        return value
    raw = base64.b64decode(value["b64"])
    shape = value["shape"]
    if _np is not None:
        return _np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
    flat = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    for size in reversed(shape[1:]):  # fold the flat list from the innermost dimension outwards
        flat = [flat[i:i + size] for i in range(0, len(flat), size)]
    return flat


# Fields of replies that hold tensors, decoded when they come back in base64 form.
_TENSOR_FIELDS = ("output", "weight", "bias")


def _decode_reply(obj):
    if isinstance(obj, dict):
        obj = dict(obj)
        for field in _TENSOR_FIELDS:
            if field in obj:
                obj[field] = decode_tensor(obj[field])
        if isinstance(obj.get("result"), dict):  # a job resource carries the reply in "result"
            obj["result"] = _decode_reply(obj["result"])
    return obj


def _encode_body(body):
    """Encodes the tensor-valued fields of a request body (and init.weight) for JSON."""
    out = {k: encode_tensor(v) for k, v in body.items() if v is not None}
    if isinstance(out.get("init"), dict):
        out["init"] = {k: encode_tensor(v) for k, v in out["init"].items()}
    return out


class Client:
    """A connection-less client of one convd daemon.

    base_url: where convd listens; token: the bearer token (default: $CONVD_TOKEN, if set); timeout: seconds to wait
    for a reply, and between two lines of a stream (a streamed training reports every step, so a long silence means
    trouble, not slow work).
    """

    def __init__(self, base_url=DEFAULT_URL, token=None, timeout=DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.token = token if token is not None else (os.environ.get("CONVD_TOKEN") or None)
        self.timeout = timeout

    # -- transport ---------------------------------------------------------------------------------------------

    def _open(self, method, path, body=None, query=None, accept="application/json"):
        """Sends one request and returns the open response; raises ConvdError for any error status."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            try:
                body = e.read()
            finally:
                e.close()
            raise ConvdError.from_body(e.code, body) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ConvdError(0, "unreachable", f"cannot reach {self.base_url}: {reason}") from None

    def _json(self, method, path, body=None, query=None):
        with self._open(method, path, body, query) as response:
            raw = response.read()
        return _decode_reply(json.loads(raw)) if raw else None

    def _ndjson(self, method, path, body=None, query=None):
        """Yields the objects of an NDJSON reply one by one, as their lines arrive (not after the reply ends)."""
        with self._open(method, path, body, query, accept="application/x-ndjson") as response:
            if response.status == 204:  # a finished job with nothing left to send
                return
            for line in response:  # HTTPResponse iterates line by line, reading only what each line needs
                line = line.strip()
                if line:
                    yield _decode_reply(json.loads(line))

    # -- the API -----------------------------------------------------------------------------------------------

    def health(self):
        """GET /healthz: {"status":"ok"} while the daemon serves."""
        return self._json("GET", "/healthz")

    def kernels(self):
        """GET /kernels: the named kernels with their values, as {"kernels":[…]}."""
        return self._json("GET", "/kernels")

    def corr2d(self, input, kernel, **options):
        """POST /corr2d: cross-correlates input with kernel (a tensor or a named kernel such as "edge").

        options are the other fields of API.md (bias, padding, stride, dilation, output_format). Returns the reply,
        {"output": …}; the output is a numpy array when the input was one.
        """
        return self._json("POST", "/corr2d", _encode_body(dict(options, input=input, kernel=kernel)))

    def train(self, input, target, **options):
        """POST /train, streamed: a generator of the event dicts (start, step…, done or error) as they arrive.

        A failure after the stream started arrives as an {"event":"error",…} event (it is not raised), so that the
        caller sees every step that did run. Closing the generator early disconnects, which cancels the job.
        """
        body = _encode_body(dict(options, input=input, target=target))
        body["stream"] = True
        return self._ndjson("POST", "/train", body)

    def train_sync(self, input, target, **options):
        """POST /train with "stream": false: one reply when training ends (status, losses, final_loss, weight, bias)."""
        body = _encode_body(dict(options, input=input, target=target))
        body["stream"] = False
        return self._json("POST", "/train", body)

    def submit_job(self, kind, **body):
        """POST /jobs: queues a "train" or "corr2d" job with the fields of that route; returns the job (status queued)."""
        return self._json("POST", "/jobs", _encode_body(dict(body, kind=kind)))

    def job(self, job_id):
        """GET /jobs/{id}: status, progress, last loss and, when done, the result."""
        return self._json("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}")

    def jobs(self, status=None, limit=None):
        """GET /jobs: the list of jobs, newest first (without their results), optionally filtered."""
        return self._json("GET", "/jobs", query={"status": status, "limit": limit})["jobs"]

    def cancel(self, job_id):
        """DELETE /jobs/{id}: cancels the job and returns it (cancelling, cancelled, or as finished)."""
        return self._json("DELETE", f"/jobs/{urllib.parse.quote(job_id, safe='')}")

    def events(self, job_id, after=None):
        """GET /jobs/{id}/events: a generator of the job's events from the start (or after event index `after`),
        following live until the job ends. Closing it early does not cancel the job."""
        return self._ndjson("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}/events", query={"after": after})
