"""Per-request limits at the edge, kept cheap: they run before authentication on every request.

- :func:`check_header_bytes`: the request's headers, whole, against ``server.max_header_bytes``
  (431). ``taskgate serve`` refuses a larger request before it is buffered (gateway/edge/server.py);
  this check gives the same answer under any other ASGI server, and in-process.
- :class:`Concurrency`: requests in flight in this process against
  ``server.max_concurrent_requests``; beyond it, 503 with ``retry-after`` at once (a counter,
  not a queue). Health endpoints are exempt.
- :func:`time_query`: ``since``/``until``/``before`` query parameters: a Unix time in seconds,
  finite and before the year 5000 (else a 400 in OpenAI's shape, never a 500).
- :func:`read_json`: a JSON body for the FastAPI endpoints, read up to ``server.max_body_bytes``
  and parsed by orjson (which refuses nesting deeper than 1024 and invalid UTF-8) rather than
  the json module (RecursionError).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import orjson

from gateway.errors import BadRequest, HeadersTooLarge, PayloadTooLarge, ServiceUnavailable

BUSY_RETRY_AFTER_S = 1
MAX_TIME_S = 95_617_584_000.0  # the year 5000

if TYPE_CHECKING:  # FastAPI is imported off the start-up path, with the API (gateway/edge/asgi.py)
    from starlette.requests import Request


def time_query() -> Any:
    from fastapi import Query

    return Query(default=None, ge=0, le=MAX_TIME_S, allow_inf_nan=False)


def check_header_bytes(headers: Iterable[tuple[bytes, bytes]], limit: int) -> None:
    size = 0
    for name, value in headers:
        size += len(name) + len(value) + 4
    if size > limit:
        raise HeadersTooLarge(f"the request's headers are {size} bytes; the limit is {limit}")


class Concurrency:
    """Requests in flight in this process (the event loop is single-threaded: a plain int)."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = 0

    def busy(self, limit: int) -> ServiceUnavailable | None:
        if self.active < limit:
            return None
        return ServiceUnavailable(f"this gateway process is serving its limit of {limit} concurrent requests; "
                                  "retry shortly", code="overloaded", retry_after=BUSY_RETRY_AFTER_S)


def json_body(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None


async def read_raw(request: Request, limit: int) -> bytes:
    """A FastAPI endpoint's body, never more than ``limit`` bytes of it buffered."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """A FastAPI endpoint's JSON body, never more than ``limit`` bytes of it buffered."""
    return json_body(await read_raw(request, limit))
