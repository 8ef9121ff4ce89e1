"""Errors of the convd client: every failure is a ConvdError, with subclasses for the common cases."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Type


class ConvdError(Exception):
    """An error reply of convd (RFC 9457 problem+json), a failed job, or a failure to reach the daemon.

    Attributes: ``status`` (HTTP status; 0 when no reply arrived), ``code`` (the stable machine code to match, such
    as ``invalid_field``, ``shape_mismatch``, ``diverged``, ``unreachable``), ``detail`` (text), ``errors`` (the
    problem's list of ``{"pointer", "detail"}``), ``pointers`` (the JSON pointers alone), ``problem`` (the whole
    problem object) and ``retry_after`` (seconds, from a 503). ``str()`` gives all of it on one line.
    """

    def __init__(self, status: int, code: str, detail: str, errors: Optional[List[Dict[str, Any]]] = None,
                 problem: Optional[Dict[str, Any]] = None, retry_after: Optional[float] = None) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.errors: List[Dict[str, Any]] = [e for e in (errors or []) if isinstance(e, dict)]
        self.pointers: List[str] = [str(e["pointer"]) for e in self.errors if e.get("pointer")]
        self.problem: Dict[str, Any] = problem or {}
        self.retry_after = retry_after
        super().__init__(self._text())

    def _text(self) -> str:
        head = f"{self.status} {self.code}" if self.status else self.code
        text = f"{head}: {self.detail}"
        fields = [f"{e.get('pointer')}: {e.get('detail')}" for e in self.errors if e.get("pointer")]
        # The detail often repeats the first field's text already; list the fields when they add something.
        if fields and not (len(fields) == 1 and self.errors[0].get("detail", "") in self.detail):
            text += " [" + "; ".join(fields) + "]"
        elif fields and self.pointers[0] not in self.detail:
            text += f" [at {self.pointers[0]}]"
        if "line" in self.problem and "column" in self.problem and "line" not in self.detail:
            text += f" (line {self.problem['line']}, column {self.problem['column']})"
        return text

    def __str__(self) -> str:
        return self._text()

    @classmethod
    def from_reply(cls, status: int, body: bytes, retry_after: Optional[float] = None) -> "ConvdError":
        """Builds the error of a reply, tolerating bodies that are not problem+json (a proxy's page, say)."""
        try:
            problem = json.loads(body)
            if not isinstance(problem, dict):
                raise ValueError
        except ValueError:
            text = body.decode("utf-8", "replace").strip() if isinstance(body, (bytes, bytearray)) else str(body)
            return _class_for(status)(status, "http_error", text[:300] or f"HTTP {status}", retry_after=retry_after)
        code = str(problem.get("code", "http_error"))
        detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
        return _class_for(status, code)(status, code, detail, problem.get("errors"), problem, retry_after)


class ConnectionFailed(ConvdError):
    """The daemon could not be reached (refused, timed out, name not found): code ``unreachable``."""


class BadRequest(ConvdError):
    """400: the body is not JSON (``invalid_json``, with line and column), or a bad query parameter."""


class Unauthorized(ConvdError):
    """401: the daemon needs a bearer token (``--token`` / ``$CONVD_TOKEN``)."""


class NotFound(ConvdError):
    """404: no such job, saved kernel or route."""


class Conflict(ConvdError):
    """409: a built-in kernel name (``name_taken``), or too many saved kernels."""


class TooLarge(ConvdError):
    """413: the body or a tensor is larger than the daemon takes."""


class InvalidRequest(ConvdError):
    """422: a field is missing, unknown, out of range or of the wrong shape (see ``pointers``)."""


class Busy(ConvdError):
    """503: the queue is full or the daemon is draining; ``retry_after`` says when to come back."""


class JobFailed(ConvdError):
    """A job ended ``failed`` (code ``diverged`` when the loss became NaN or infinite) or ``cancelled``."""


_BY_STATUS: Dict[int, Type[ConvdError]] = {400: BadRequest, 401: Unauthorized, 404: NotFound, 409: Conflict,
                                           413: TooLarge, 422: InvalidRequest, 503: Busy}


def _class_for(status: int, code: str = "") -> Type[ConvdError]:
    if code == "diverged" and status == 422:
        return JobFailed
    return _BY_STATUS.get(status, ConvdError)
