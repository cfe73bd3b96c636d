"""The seam between the attempt loop and the network.

:class:`Transport` is the one thing the proxy path calls to reach an upstream:
``send`` for a whole answer, ``stream`` for one read as it arrives. Every
transport problem (refused connection, timeout, a connection dropped mid-body)
comes out as an :class:`UpstreamCallError` carrying a provider-neutral failure.
Tests drive the attempt loop in-process with a scripted transport instead.

:class:`H1Transport` is the production one: the lean HTTP/1.1 client of
:mod:`gateway.upstream.h1` (an asyncio Protocol and httptools' parser) with the
keep-alive pool and per-URL request templates of :mod:`gateway.upstream.pool`.
It replaced aiohttp's ClientSession (issue 16: ~150 µs less CPU per request;
docs/ARCHITECTURE.md, "The upstream client"); aiohttp is not used for upstream
calls at all. The gateway never went through HTTP proxies (aiohttp ran with
``trust_env`` off), so nothing needs it as a fallback.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Mapping, Protocol
from urllib.parse import urlsplit

from gateway.snapshot import Timeouts
from gateway.upstream.h1 import ConnectError, Connection, ProtocolError
from gateway.upstream.pool import Pool
from providers.base import UPSTREAM_TOO_LARGE, FailureReason, UpstreamFailure, UpstreamRequest

# (max_upstream_response_bytes, max_upstream_event_bytes) in force: see the config's server section
Limits = Callable[[], tuple[int, int]]
NO_LIMITS: Limits = lambda: (1 << 62, 1 << 62)  # noqa: E731


def too_large(req: UpstreamRequest, what: str, limit: int) -> UpstreamCallError:
    where = urlsplit(req.url).hostname or ""
    return UpstreamCallError(UpstreamFailure(FailureReason.PROTOCOL, 200,
                                             f"{where} sent {what} over the limit of {limit} bytes; cut",
                                             code=UPSTREAM_TOO_LARGE))


async def read_limited(conn: Connection, req: UpstreamRequest, limit: int) -> bytes:
    """A whole body, read up to ``limit`` bytes (after decoding): never more is buffered."""
    declared = conn.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(req, f"a body of {int(declared)} bytes", limit)
    body = await conn.body(limit)
    if body is None:
        raise too_large(req, "a body", limit)
    return body


class UpstreamCallError(Exception):
    def __init__(self, failure: UpstreamFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


class StreamReply(Protocol):
    status: int
    headers: Mapping[str, str]  # lower-case names

    def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive, unbuffered; transport errors as UpstreamCallError."""
        ...

    async def read_all(self) -> bytes: ...


class Transport(Protocol):
    async def send(self, req: UpstreamRequest, timeouts: Timeouts) -> Reply: ...

    def stream(self, req: UpstreamRequest, timeouts: Timeouts) -> AbstractAsyncContextManager[StreamReply]: ...

    async def close(self) -> None: ...


class _H1Stream:
    def __init__(self, req: UpstreamRequest, conn: Connection, limits: tuple[int, int]) -> None:
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers
        self._req = req
        self._conn = conn
        self._limits = limits

    async def chunks(self) -> AsyncIterator[bytes]:
        limit = self._limits[1]
        line = 0  # bytes since the last newline: one SSE line (or event) is never longer than the limit
        next_chunk = self._conn.next_chunk
        try:
            while (data := await next_chunk()) is not None:
                end = data.rfind(b"\n")
                line = line + len(data) if end < 0 else len(data) - end - 1
                if line > limit:
                    raise too_large(self._req, "one stream line", limit)
                yield data
        except UpstreamCallError:
            raise
        except Exception as exc:  # a cut or unreadable body, a read timeout
            raise UpstreamCallError(transport_failure(self._req, exc)) from exc

    async def read_all(self) -> bytes:
        try:
            return await read_limited(self._conn, self._req, self._limits[0])
        except UpstreamCallError:
            raise
        except Exception as exc:
            raise UpstreamCallError(transport_failure(self._req, exc)) from exc


class H1Transport:
    def __init__(self, limits: Limits = NO_LIMITS, pool: Pool | None = None) -> None:
        self._limits = limits
        self._pool = pool or Pool()

    async def start(self) -> None:
        pass  # connections open on first use

    async def close(self) -> None:
        self._pool.close()

    async def _open(self, req: UpstreamRequest, timeouts: Timeouts, streaming: bool) -> Connection:
        """A connection with the request written and the response's head read."""
        pool = self._pool
        deadline = asyncio.get_running_loop().time() + timeouts.total  # the total includes connecting
        target = pool.target(req.url)
        head = pool.head(req.method, target, req.headers, len(req.body))
        conn = await pool.acquire(target, min(timeouts.connect, timeouts.total))
        try:
            conn.start(head, req.body, deadline, timeouts.read, streaming)
            await conn.head()
        except BaseException:
            pool.release(conn)  # not whole: closed
            raise
        return conn

    async def send(self, req: UpstreamRequest, timeouts: Timeouts) -> Reply:
        try:
            conn = await self._open(req, timeouts, False)
            try:
                reply = Reply(conn.status, conn.headers, await read_limited(conn, req, self._limits()[0]))
            finally:
                self._pool.release(conn)  # reused only after a whole keep-alive exchange
            return reply
        except UpstreamCallError:
            raise
        except Exception as exc:
            raise UpstreamCallError(transport_failure(req, exc)) from exc

    @asynccontextmanager
    async def stream(self, req: UpstreamRequest, timeouts: Timeouts) -> AsyncIterator[StreamReply]:
        try:
            conn = await self._open(req, timeouts, True)
        except Exception as exc:
            raise UpstreamCallError(transport_failure(req, exc)) from exc
        try:
            yield _H1Stream(req, conn, self._limits())
        finally:
            self._pool.release(conn)  # an unfinished upstream stream is aborted, a whole one reused


def transport_failure(req: UpstreamRequest, exc: BaseException) -> UpstreamFailure:
    """A provider-neutral failure for a transport exception. Never leaks the URL's query or userinfo."""
    parts = urlsplit(req.url)
    where = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(FailureReason.TIMEOUT, 0, f"no answer from {where} in time")
    if isinstance(exc, ConnectError):
        return UpstreamFailure(FailureReason.UNAVAILABLE, 0,
                               f"cannot connect to {where}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, (ProtocolError, OSError)):
        return UpstreamFailure(FailureReason.SERVER_ERROR, 0, f"{where} closed the connection mid-response")
    if isinstance(exc, ValueError):  # not an http(s) URL, a header that cannot be sent
        return UpstreamFailure(FailureReason.UNAVAILABLE, 0, f"request to {where} failed: {type(exc).__name__}")
    return UpstreamFailure(FailureReason.SERVER_ERROR, 0, f"request to {where} failed: {type(exc).__name__}")
