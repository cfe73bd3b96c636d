"""The seam between the attempt loop and the network.

:class:`Transport` is the one thing the proxy path calls to reach an upstream:
``send`` for a whole answer, ``stream`` for one read as it arrives. Every
transport problem (refused connection, timeout, a connection dropped mid-body)
comes out as an :class:`UpstreamCallError` carrying a provider-neutral failure.
:class:`AiohttpTransport` is the production one (one pooled keep-alive session);
tests drive the attempt loop in-process with a scripted transport instead.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Mapping, Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from gateway.snapshot import Timeouts
from providers.base import UPSTREAM_TOO_LARGE, FailureReason, UpstreamFailure, UpstreamRequest

# (max_upstream_response_bytes, max_upstream_event_bytes) in force: see the config's server section
Limits = Callable[[], tuple[int, int]]
NO_LIMITS: Limits = lambda: (1 << 62, 1 << 62)  # noqa: E731


def too_large(req: UpstreamRequest, what: str, limit: int) -> UpstreamCallError:
    where = urlsplit(req.url).hostname or ""
    return UpstreamCallError(UpstreamFailure(FailureReason.PROTOCOL, 200,
                                             f"{where} sent {what} over the limit of {limit} bytes; cut",
                                             code=UPSTREAM_TOO_LARGE))


async def read_limited(content: aiohttp.StreamReader, declared: int | None, req: UpstreamRequest,
                       limit: int) -> bytes:
    """A whole body, read up to ``limit`` bytes: never more is buffered."""
    if declared is not None:
        if declared > limit:
            raise too_large(req, f"a body of {declared} bytes", limit)
        return await content.read()  # a declared length within the limit: aiohttp reads just that much
    chunks: list[bytes] = []
    size = 0
    async for data in content.iter_any():
        size += len(data)
        if size > limit:
            raise too_large(req, "a body", limit)
        chunks.append(data)
    return b"".join(chunks)


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


class _AiohttpStream:
    def __init__(self, req: UpstreamRequest, resp: aiohttp.ClientResponse, limits: tuple[int, int]) -> None:
        self.status = resp.status
        self.headers: Mapping[str, str] = _lower(resp.headers)
        self._req = req
        self._resp = resp
        self._limits = limits

    async def chunks(self) -> AsyncIterator[bytes]:
        limit = self._limits[1]
        line = 0  # bytes since the last newline: one SSE line (or event) is never longer than the limit
        try:
            async for data in self._resp.content.iter_any():
                end = data.rfind(b"\n")
                line = line + len(data) if end < 0 else len(data) - end - 1
                if line > limit:
                    raise too_large(self._req, "one stream line", limit)
                yield data
        except UpstreamCallError:
            raise
        except Exception as exc:  # aiohttp payload errors, read timeouts, a dropped connection
            raise UpstreamCallError(transport_failure(self._req, exc)) from exc

    async def read_all(self) -> bytes:
        try:
            return await read_limited(self._resp.content, self._resp.content_length, self._req, self._limits[0])
        except UpstreamCallError:
            raise
        except Exception as exc:
            raise UpstreamCallError(transport_failure(self._req, exc)) from exc


class AiohttpTransport:
    def __init__(self, limits: Limits = NO_LIMITS) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        # keyed by the frozen Timeouts value itself: a reload's new value is a new key, never a stale hit
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}
        # a deployment's URL, parsed once (adapters build the same string for every request to it)
        self._urls: dict[str, URL] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout(self, t: Timeouts) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(t)
        if found is None:
            if len(self._timeouts) > 1024:  # many reloads: start over rather than grow
                self._timeouts.clear()
            found = self._timeouts[t] = aiohttp.ClientTimeout(total=t.total, connect=t.connect, sock_read=t.read)
        return found

    def _url(self, raw: str) -> URL:
        found = self._urls.get(raw)
        if found is None:
            if len(self._urls) > 1024:  # URLs that vary per request (a query): start over rather than grow
                self._urls.clear()
            # Adapters build URLs already percent-encoded, and signatures (SigV4) cover
            # that exact path: aiohttp must not re-quote it (it would turn %3A into ':').
            found = self._urls[raw] = URL(raw, encoded=True)
        return found

    def _session_or_fail(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AiohttpTransport.start() was not awaited")
        return self._session

    async def send(self, req: UpstreamRequest, timeouts: Timeouts) -> Reply:
        session = self._session_or_fail()
        try:
            async with session.request(req.method, self._url(req.url), data=req.body, headers=req.headers,
                                       timeout=self._timeout(timeouts)) as resp:
                body = await read_limited(resp.content, resp.content_length, req, self._limits()[0])
                return Reply(resp.status, _lower(resp.headers), body)
        except UpstreamCallError:
            raise
        except Exception as exc:
            raise UpstreamCallError(transport_failure(req, exc)) from exc

    @asynccontextmanager
    async def stream(self, req: UpstreamRequest, timeouts: Timeouts) -> AsyncIterator[StreamReply]:
        session = self._session_or_fail()
        try:
            resp = await session.request(req.method, self._url(req.url), data=req.body, headers=req.headers,
                                         timeout=self._timeout(timeouts))
        except Exception as exc:
            raise UpstreamCallError(transport_failure(req, exc)) from exc
        try:
            yield _AiohttpStream(req, resp, self._limits())
        finally:
            resp.close()  # closing (not releasing) aborts an unfinished upstream stream


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def transport_failure(req: UpstreamRequest, exc: BaseException) -> UpstreamFailure:
    """A provider-neutral failure for a transport exception. Never leaks the URL's query or userinfo."""
    parts = urlsplit(req.url)
    where = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamFailure(FailureReason.TIMEOUT, 0, f"no answer from {where} in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamFailure(FailureReason.UNAVAILABLE, 0,
                               f"cannot connect to {where}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
        return UpstreamFailure(FailureReason.SERVER_ERROR, 0, f"{where} closed the connection mid-response")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamFailure(FailureReason.UNAVAILABLE, 0, f"request to {where} failed: {type(exc).__name__}")
    return UpstreamFailure(FailureReason.SERVER_ERROR, 0, f"request to {where} failed: {type(exc).__name__}")
