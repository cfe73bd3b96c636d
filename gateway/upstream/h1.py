"""A lean HTTP/1.1 client: one asyncio Protocol per connection, httptools' response parser,
and a keep-alive pool per (scheme, host, port).

Only what the upstream calls need: one request at a time per connection, a bytes body,
responses framed by Content-Length, chunked encoding or the end of the connection,
gzip/deflate decoding, TLS through :mod:`ssl` (SNI, verification on, the system's CAs),
and the three timeouts of :class:`gateway.snapshot.Timeouts`:

* ``connect``: to open a connection (TCP and TLS);
* ``total``: the whole exchange, from the request to the body's last byte;
* ``read`` (streams): to the first byte, and between two reads of the socket.

A connection goes back to the pool only after a whole, keep-alive response that nothing
followed; after an error, a timeout or a body not read to its end it is closed. Redirects
are not followed (the upstream's 3xx is the answer).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from dataclasses import dataclass
from typing import Any, cast

import httptools

MAX_HEAD = 64 * 1024  # bytes of status line and headers an upstream may send
HIGH_WATER = 256 * 1024  # body bytes a stream buffers before it stops reading the socket
KEEPALIVE_S = 30.0  # an idle connection older than this is closed, never reused
_DECODED = ("gzip", "deflate", "x-gzip")


class ProtocolError(Exception):
    """The upstream broke HTTP/1.1, or closed the connection before the response's end."""


class ConnectError(Exception):
    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error


@dataclass(frozen=True, slots=True)
class Target:
    """What one URL means to the pool, parsed once: see :meth:`Pool.target`."""

    key: tuple[str, str, int]  # scheme, host, port: the pool's key
    host: str
    port: int
    tls: bool
    path: str  # path and query, as sent (adapters percent-encode; signatures cover it)
    host_header: str
    basic_auth: str | None  # from userinfo in the URL


class Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int]) -> None:
        self.loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.busy = False  # a request was written and its response is not whole yet
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.began = False
        self.extra = False  # a second response (or junk) after the first: never reuse
        self.until_eof = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.streaming = False
        self.paused = False
        self.exc: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.head_size = 0
        self.last_data = 0.0
        self.read_timeout: float | None = None
        self.decoder: Any = None
        self._timers: list[asyncio.TimerHandle] = []

    # --- the exchange ---------------------------------------------------------------

    def start(self, head: bytes, body: bytes, deadline: float, read_timeout: float | None, streaming: bool) -> None:
        """Writes one request and arms its timers (the deadline is on the loop's clock)."""
        assert self.transport is not None
        self.busy = True
        if self.closed:  # the upstream closed it while it was idle
            self._fail(ProtocolError("connection closed before the request"))
            return
        self.streaming = streaming
        loop = self.loop
        self._timers.append(loop.call_at(deadline, self._expire))
        if read_timeout is not None:
            self.read_timeout = read_timeout
            self.last_data = now = loop.time()
            self._timers.append(loop.call_at(now + read_timeout, self._check_read))
        if len(body) < 65536:
            self.transport.write(head + body)  # one write, one packet for the usual request
        else:
            self.transport.writelines((head, body))  # not copied

    async def head(self) -> None:
        while not self.head_done:
            await self._wait()

    async def body(self, limit: int) -> bytes | None:
        """The whole body, or None once it grew past ``limit`` bytes."""
        while not self.complete:
            if self.buffered > limit:
                return None
            await self._wait()
        if self.exc is not None:
            raise self.exc
        if self.buffered > limit:
            return None
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def next_chunk(self) -> bytes | None:
        """Body bytes as they arrived since the last call; None at the body's end."""
        while True:
            if self.exc is not None:
                raise self.exc
            chunks = self.chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.chunks = []
                self.buffered = 0
                if self.paused and self.transport is not None:
                    self.paused = False
                    self.last_data = self.loop.time()
                    self.transport.resume_reading()
                return data
            if self.complete:
                return None
            await self._wait()

    def reusable(self) -> bool:
        return (self.complete and self.keep_alive and not self.extra and not self.closed
                and self.exc is None and not self.until_eof)

    def recycle(self) -> None:
        """Ready for the next request (after a reusable exchange)."""
        for timer in self._timers:
            timer.cancel()
        self.busy = False
        self._reset()
        self.idle_since = self.loop.time()

    def abort(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def _wait(self) -> None:
        if self.exc is not None:
            raise self.exc
        waiter = self.waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None
        if self.exc is not None:
            raise self.exc

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.exc is None and not self.complete:
            self.exc = exc
        self.abort()
        self._wake()

    def _expire(self) -> None:
        if not self.complete:
            self._fail(TimeoutError())

    def _check_read(self) -> None:
        if self.complete or self.exc is not None or self.read_timeout is None:
            return
        now = self.loop.time()
        if self.paused:  # the reader is behind, not the upstream
            self.last_data = now
        due = self.last_data + self.read_timeout
        if now >= due:
            self._fail(TimeoutError())
        else:
            self._timers.append(self.loop.call_at(due, self._check_read))

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a registered subclass)

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete:  # bytes nobody asked for: never trust this connection again
            self.extra = True
            if not self.busy:
                self.abort()
            return
        self.last_data = self.loop.time() if self.read_timeout is not None else 0.0
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # httptools' parse errors, a callback's (zlib) error
            self._fail(ProtocolError(f"unreadable response: {type(exc).__name__}"))
            return
        if not self.head_done:  # (a read is at most the loop's buffer: the parser never holds much more)
            self.head_size += len(data)
            if self.head_size > MAX_HEAD:
                self._fail(ProtocolError(f"response headers over {MAX_HEAD} bytes"))

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.busy and not self.complete:
            if self.head_done and self.until_eof and self.exc is None:
                self._finish()
            else:
                self._fail(ProtocolError("connection closed mid-response"))

    # --- httptools callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.began:  # a second response after the first: stop here, and never reuse
            self.extra = True
            raise ProtocolError("more than one response")
        self.began = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("utf-8", "surrogateescape")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # informational: the real response follows
            self.headers = {}
            return
        self.status = status
        self.head_done = True
        headers = self.headers
        if headers.get("content-encoding", "").strip().lower() in _DECODED:
            self.decoder = zlib.decompressobj(wbits=47)  # gzip or zlib, by the header
        if "content-length" not in headers and "transfer-encoding" not in headers and status not in (204, 304):
            self.until_eof = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.decoder is not None:
            body = self.decoder.decompress(body)
            if not body:
                return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.streaming and self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:  # the end of an informational response
            self.began = False
            return
        self.keep_alive = self.parser.should_keep_alive()
        self._finish()

    def _finish(self) -> None:
        if self.decoder is not None:
            tail = self.decoder.flush()
            if tail:
                self.chunks.append(tail)
                self.buffered += len(tail)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.complete = True
        self._wake()
