"""The one HTTP client that talks to providers: a pooled keep-alive aiohttp session.

Adapters build :class:`UpstreamRequest` values; this module sends them and turns
every transport problem (refused connection, timeout, dropped connection) into
an :class:`UpstreamCallError` carrying a provider-neutral failure.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Mapping
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from providers.base import Deployment, FailureReason, UpstreamFailure, UpstreamRequest


class UpstreamCallError(Exception):
    def __init__(self, failure: UpstreamFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass(slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(slots=True)
class StreamReply:
    status: int
    headers: Mapping[str, str]
    response: aiohttp.ClientResponse

    def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive, unbuffered."""
        return self.response.content.iter_any()

    async def read_all(self) -> bytes:
        return await self.response.read()


class UpstreamClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[str, bool], aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))

    def forget_timeouts(self) -> None:
        self._timeouts.clear()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout(self, dep: Deployment, stream: bool) -> aiohttp.ClientTimeout:
        key = (dep.id, stream)
        timeout = self._timeouts.get(key)
        if timeout is None:
            if stream:  # a limit to the first byte and between chunks, and one for the whole stream
                timeout = aiohttp.ClientTimeout(total=dep.timeout, connect=dep.connect_timeout,
                                                sock_read=dep.stream_timeout)
            else:
                timeout = aiohttp.ClientTimeout(total=dep.timeout, connect=dep.connect_timeout)
            self._timeouts[key] = timeout
        return timeout

    async def call(self, dep: Deployment, req: UpstreamRequest) -> Reply:
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        try:
            async with self._session.request(
                req.method, _url(req), data=req.body, headers=req.headers, timeout=self._timeout(dep, False)
            ) as resp:
                body = await resp.read()
                return Reply(resp.status, _lower(resp.headers), body)
        except Exception as exc:
            raise UpstreamCallError(transport_failure(dep, req, exc)) from exc

    @asynccontextmanager
    async def stream(self, dep: Deployment, req: UpstreamRequest) -> AsyncIterator[StreamReply]:
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        try:
            resp = await self._session.request(
                req.method, _url(req), data=req.body, headers=req.headers, timeout=self._timeout(dep, True)
            )
        except Exception as exc:
            raise UpstreamCallError(transport_failure(dep, req, exc)) from exc
        try:
            yield StreamReply(resp.status, _lower(resp.headers), resp)
        finally:
            resp.close()  # closing (not releasing) aborts an unfinished upstream stream


def _url(req: UpstreamRequest) -> URL:
    # Adapters build URLs already percent-encoded, and signatures (SigV4) cover
    # that exact path: aiohttp must not re-quote it (it would turn %3A into ':').
    return URL(req.url, encoded=True)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def transport_failure(dep: Deployment, req: UpstreamRequest, exc: BaseException) -> UpstreamFailure:
    """A provider-neutral failure for a transport exception. Never leaks the URL's query."""
    parts = urlsplit(req.url)
    where = f"{parts.scheme}://{parts.netloc}"
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamFailure(FailureReason.TIMEOUT, 0, f"no answer from {where} in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamFailure(FailureReason.UNAVAILABLE, 0, f"cannot connect to {where}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
        return UpstreamFailure(FailureReason.SERVER_ERROR, 0, f"{where} closed the connection mid-response")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamFailure(FailureReason.UNAVAILABLE, 0, f"request to {where} failed: {type(exc).__name__}")
    return UpstreamFailure(FailureReason.SERVER_ERROR, 0, f"request to {where} failed: {type(exc).__name__}")
