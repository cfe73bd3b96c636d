"""The transport answers the built-in ``demo`` provider's pseudo-URL itself (``providers/demo.py``).

:class:`DemoTransport` wraps the real transport: a request to ``demo://`` is answered
in-process with the deterministic test double's reply, anything else goes to the
network unchanged. No socket is opened for the demo model.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, AsyncIterator, Mapping

import orjson

from gateway.snapshot import Timeouts
from gateway.upstream.transport import Reply, StreamReply, Transport
from providers import demo
from providers.base import UpstreamRequest

SCHEME = "demo://"
_JSON = {"content-type": "application/json"}
_MAX_SEEN = 10_000  # [demo:flaky] texts remembered (first call fails, the next succeeds)


class _DemoStream:
    def __init__(self, status: int, headers: Mapping[str, str], parts: list[bytes]) -> None:
        self.status = status
        self.headers = headers
        self._parts = parts

    async def chunks(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part

    async def read_all(self) -> bytes:
        return b"".join(self._parts)


class DemoTransport:
    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self._seen: set[str] = set()

    def _failure(self, body: Mapping[str, Any]) -> bytes | None:
        text = demo.last_user_text(body)
        if demo.FAIL in text:
            return _error("the demo model fails this request on purpose ([demo:fail])")
        if demo.FLAKY in text and text not in self._seen:
            if len(self._seen) >= _MAX_SEEN:
                self._seen.clear()
            self._seen.add(text)
            return _error("the demo model fails the first try of this request on purpose ([demo:flaky])")
        return None

    async def send(self, req: UpstreamRequest, timeouts: Timeouts) -> Reply:
        if not req.url.startswith(SCHEME):
            return await self.inner.send(req, timeouts)
        body = _body(req)
        failed = self._failure(body)
        if failed is not None:
            return Reply(503, _JSON, failed)
        return Reply(200, _JSON, orjson.dumps(demo.completion(body)))

    def stream(self, req: UpstreamRequest, timeouts: Timeouts) -> AbstractAsyncContextManager[StreamReply]:
        if not req.url.startswith(SCHEME):
            return self.inner.stream(req, timeouts)
        return self._stream(req)

    @asynccontextmanager
    async def _stream(self, req: UpstreamRequest) -> AsyncIterator[StreamReply]:
        body = _body(req)
        failed = self._failure(body)
        if failed is not None:
            yield _DemoStream(503, _JSON, [failed])
            return
        parts = [b"data: " + orjson.dumps(c) + b"\n\n" for c in demo.chunks(body)] + [b"data: [DONE]\n\n"]
        yield _DemoStream(200, {"content-type": "text/event-stream"}, parts)

    async def close(self) -> None:
        await self.inner.close()


def _body(req: UpstreamRequest) -> dict[str, Any]:
    data = orjson.loads(req.body) if req.body else {}
    return data if isinstance(data, dict) else {}


def _error(message: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "server_error", "code": "demo_failure"}})
