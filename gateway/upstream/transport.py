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
from typing import AsyncIterator, Mapping, Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from gateway.snapshot import Timeouts
from providers.base import FailureReason, UpstreamFailure, UpstreamRequest


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
    def __init__(self, req: UpstreamRequest, resp: aiohttp.ClientResponse) -> None:
        self.status = resp.status
        self.headers: Mapping[str, str] = _lower(resp.headers)
        self._req = req
        self._resp = resp

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._resp.content.iter_any():
                yield data
        except Exception as exc:  # aiohttp payload errors, read timeouts, a dropped connection
            raise UpstreamCallError(transport_failure(self._req, exc)) from exc

    async def read_all(self) -> bytes:
        try:
            return await self._resp.read()
        except Exception as exc:
            raise UpstreamCallError(transport_failure(self._req, exc)) from exc


class AiohttpTransport:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        # keyed by the frozen Timeouts value itself: a reload's new value is a new key, never a stale hit
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

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

    def _session_or_fail(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AiohttpTransport.start() was not awaited")
        return self._session

    async def send(self, req: UpstreamRequest, timeouts: Timeouts) -> Reply:
        session = self._session_or_fail()
        try:
            async with session.request(req.method, _url(req), data=req.body, headers=req.headers,
                                       timeout=self._timeout(timeouts)) as resp:
                body = await resp.read()
                return Reply(resp.status, _lower(resp.headers), body)
        except Exception as exc:
            raise UpstreamCallError(transport_failure(req, exc)) from exc

    @asynccontextmanager
    async def stream(self, req: UpstreamRequest, timeouts: Timeouts) -> AsyncIterator[StreamReply]:
        session = self._session_or_fail()
        try:
            resp = await session.request(req.method, _url(req), data=req.body, headers=req.headers,
                                         timeout=self._timeout(timeouts))
        except Exception as exc:
            raise UpstreamCallError(transport_failure(req, exc)) from exc
        try:
            yield _AiohttpStream(req, resp)
        finally:
            resp.close()  # closing (not releasing) aborts an unfinished upstream stream


def _url(req: UpstreamRequest) -> URL:
    # Adapters build URLs already percent-encoded, and signatures (SigV4) cover
    # that exact path: aiohttp must not re-quote it (it would turn %3A into ':').
    return URL(req.url, encoded=True)


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
