"""The HTTP/1.1 connection as ``taskgate serve`` runs it: uvicorn's httptools protocol, plus the
limits that protect the process from a slow or huge client, before any request reaches the app.

- **Header size** (``server.max_header_bytes``): the request line and headers are counted as
  they arrive; past the limit the connection answers 431 and closes, so a 16 MB header is
  never buffered (httptools would otherwise accumulate it whole, and uvicorn has no limit).
- **Header read timeout** (``server.header_timeout_s``): from the first byte of a request (or
  the connection's start) to the end of its headers. A client that sends one byte a second
  is answered 408 and closed. uvicorn's ``timeout_keep_alive`` only covers idle connections.
- **Body read timeout** (``server.body_timeout_s``): from the end of the headers to the end of
  the body. Past it the connection answers 408 (unless the response started) and closes; the
  app's ``receive()`` then sees ``http.disconnect``.

The limits are read from the config in force when a connection opens (hot reload applies to
new connections). The answers are in OpenAI's error shape; nothing here runs per request on
the app's side, and the per-connection cost is one timer.

- **One write per whole response**: uvicorn writes a response's status line and headers, then
  its body, as two sends (two packets). Each request's cycle writes through :class:`OneWrite`,
  which holds the headers until the body's first write in the same step of the event loop, and
  sends both at once; headers that no body follows in that step (a stream waiting for its
  first event) are sent by a callback at the loop's next turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config.schema import ServerSection

DEFAULT = ServerSection()


def error_bytes(status: int, reason: str, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": code}})
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def server_section(app: object) -> ServerSection:
    """The ``server`` section of the config in force, found through uvicorn's middleware wrappers."""
    for _ in range(8):
        snapshots = getattr(app, "snapshots", None)
        if snapshots is not None:
            section: ServerSection = snapshots.config.server
            return section
        app = getattr(app, "app", None)
        if app is None:
            break
    return DEFAULT


class OneWrite:
    """A request cycle's transport: holds a response's head (``HTTP/1.1 ...``) until the next
    write, or at the latest the event loop's next turn, so that head and body go out in one send."""

    __slots__ = ("transport", "loop", "held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            self.held = None
            self.transport.write(held + data)
        elif data.startswith(b"HTTP/"):
            self.held = data
            self.loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        held = self.held
        if held is not None:
            self.held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class TaskgateHttpProtocol(HttpToolsProtocol):
    """``uvicorn.run(..., http=TaskgateHttpProtocol)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = server_section(self.app)
        self._max_header_bytes = limits.max_header_bytes
        self._header_timeout = limits.header_timeout_s
        self._body_timeout = limits.body_timeout_s
        self._in_headers = True  # reading a request line and headers (or waiting for one)
        self._in_body = False  # reading a request's body
        self._begun = False  # a request's first byte has arrived (and its headers have not ended)
        self._requests = 0  # requests whose headers have been read on this connection
        self._pending = 0  # bytes fed to the parser while still in the headers
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._one_write: OneWrite | None = None

    # --- the timers ------------------------------------------------------------------------

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, what: str) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        limit = self._header_timeout if what == "headers" else self._body_timeout
        cycle = self.cycle if what == "body" else None
        answer = cycle is None or not cycle.response_started
        if cycle is not None:  # the app's receive() now sees a disconnect, and its sends go nowhere
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(408, "Request Timeout", "request_timeout",
                     f"the request's {what} did not arrive within {limit:g}s", answer=answer)

    def _refuse(self, status: int, reason: str, code: str, message: str, answer: bool = True) -> None:
        self._refused = True
        self._disarm()
        if self._one_write is not None:  # a response's head still held goes first
            self._one_write.flush()
        if answer:
            self.transport.write(error_bytes(status, reason, code, message))
        self.transport.close()

    # --- uvicorn's protocol, with the limits ----------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses (a bare CR in a header, a malformed request line): in OpenAI's
        shape, like every other answer, rather than uvicorn's plain text."""
        self._refuse(400, "Bad Request", "invalid_http_request", msg)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._one_write = OneWrite(transport, self.loop)
        self._arm(self._header_timeout, "headers")  # a connection that sends nothing is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """The header limit is checked before the parser sees a chunk (so it never buffers more),
        and timers are armed only when a chunk ends mid-headers or mid-body: a request that
        arrives in one piece (the common case) costs one comparison and no timer."""
        if self._refused:
            return
        in_headers = self._in_headers
        if in_headers and self._pending + len(data) > self._max_header_bytes:
            end = data.find(b"\r\n\r\n")
            if end < 0 or self._pending + end + 4 > self._max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large", "request_header_fields_too_large",
                             f"the request's headers are over the limit of {self._max_header_bytes} bytes")
                return
        requests = self._requests
        super().data_received(data)
        if self._in_headers:
            if self._begun:  # the chunk ended inside a request line or headers
                if in_headers and requests == self._requests:  # (a new request's first bytes: not counted)
                    self._pending += len(data)
                if self._timer is None:
                    self._arm(self._header_timeout, "headers")
        elif self._in_body and self._timer is None:  # the chunk ended inside a body
            self._arm(self._body_timeout, "body")

    def on_message_begin(self) -> None:
        self._begun = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_headers = False
        self._in_body = True
        self._pending = 0
        self._requests += 1
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous and self.cycle is not None:  # not an upgrade: the new request's cycle
            self.cycle.transport = self._one_write  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._disarm()  # idle from here on: uvicorn's keep-alive timeout applies
        self._in_body = False
        self._in_headers = True
        self._begun = False
        super().on_message_complete()
