"""A small synchronous client of the gateway's tasks API, for the CLI.

    CLIError                  exit 1: one line for stderr, never a traceback
    ├── ConnectionFailed      the gateway could not be reached (refused, DNS, timeout, bad URL)
    └── APIError              the gateway answered with an error status (its OpenAI-shaped message)

All I/O crosses one seam, :data:`Transport`: ``(method, url, headers, body,
timeout) -> (status, body)``. :func:`urllib_transport` is the real one (the
standard library, so the CLI needs no HTTP dependency); tests may pass another.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

__all__ = ["APIError", "CLIError", "Client", "ConnectionFailed", "Transport", "urllib_transport"]

DEFAULT_URL = "http://127.0.0.1:4000"
DEFAULT_TIMEOUT = 30.0

Transport = Callable[[str, str, Mapping[str, str], bytes | None, float], tuple[int, bytes]]


class CLIError(Exception):
    """A failure the CLI reports as one line on stderr, exit code 1."""


class ConnectionFailed(CLIError):
    pass


class APIError(CLIError):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def urllib_transport(method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                     timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:  # an answer with an error status: the caller reads its body
        with exc:
            return exc.code, exc.read()
    except urllib.error.URLError as exc:
        raise ConnectionFailed(_reason(exc.reason)) from exc
    except (TimeoutError, socket.timeout) as exc:
        raise ConnectionFailed(f"no answer within {timeout:g} s") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise ConnectionFailed(_reason(exc)) from exc
    except ValueError as exc:  # "unknown url type", a malformed host or port
        raise ConnectionFailed(f"invalid URL: {exc}") from exc


def _reason(reason: object) -> str:
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def error_message(status: int, body: bytes) -> APIError:
    """The gateway's OpenAI-shaped error, or a plain description of whatever else answered."""
    try:
        err = json.loads(body).get("error")
    except (ValueError, AttributeError):
        err = None
    if isinstance(err, dict) and err.get("message"):
        return APIError(status, f"{err['message']} (HTTP {status}{', ' + err['code'] if err.get('code') else ''})",
                        err.get("code"))
    reason = http.client.responses.get(status, "error")
    return APIError(status, f"HTTP {status} {reason} (not a Taskgate error body)")


@dataclass(frozen=True)
class Client:
    url: str = DEFAULT_URL
    key: str | None = None
    tenant: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    transport: Transport = field(default=urllib_transport, repr=False)

    def __post_init__(self) -> None:
        try:
            parts = urllib.parse.urlsplit(self.url)
            parts.port  # noqa: B018 - raises on a malformed or out-of-range port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectionFailed(f"invalid gateway URL {self.url!r}: expected http(s)://host[:port]")

    def request(self, method: str, path: str, params: Mapping[str, Any] | None = None,
                body: Any = None) -> dict[str, Any]:
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        if self.tenant:
            query["tenant"] = self.tenant
        url = self.url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": "application/json", "User-Agent": "taskgate-cli"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            status, raw = self.transport(method, url, headers, data, self.timeout)
        except ConnectionFailed as exc:
            raise ConnectionFailed(f"cannot reach the gateway at {self.url}: {exc}") from exc
        if status >= 400:
            raise error_message(status, raw)
        try:
            out = json.loads(raw)
        except ValueError:
            raise APIError(status, f"the server at {self.url} did not answer JSON; is it a Taskgate gateway?") from None
        if not isinstance(out, dict):
            raise APIError(status, f"unexpected answer from {self.url}{path}: not a JSON object")
        return out

    # --- the tasks API -----------------------------------------------------------

    def list_tasks(self, **params: Any) -> dict[str, Any]:
        return self.request("GET", "/v1/tasks", params)

    def get_task(self, task_id: str, attempts: bool = False) -> dict[str, Any]:
        return self.request("GET", f"/v1/tasks/{_quote(task_id)}", {"include": "attempts" if attempts else None})

    def complete_task(self, task_id: str, outcome: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/tasks/{_quote(task_id)}/complete", body={"outcome": outcome})

    def report(self, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        return self.request("GET", "/v1/reports/tasks", {"since": since, "until": until})


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _param(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
