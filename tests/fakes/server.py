"""Run an ASGI app on 127.0.0.1 in a background thread, plus a small per-request helper.

`FakeServer` is what every fake wraps; `Exchange` gives the fakes the few low-level
moves they need (JSON replies, streamed bodies, hanging, and cutting the TCP connection
without a proper end), which a framework would hide.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qsl

import orjson
import uvicorn

HANG_LIMIT_SECONDS = 120.0


class FakeServer:
    """uvicorn (h11, no lifespan) on a free 127.0.0.1 port, in a daemon thread."""

    def __init__(self, app: Callable, host: str = "127.0.0.1", on_stop: Callable[[], None] | None = None):
        self.app = app
        self.host = host
        self.port: int | None = None
        self._on_stop = on_stop
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeServer is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> "FakeServer":
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, http="h11", lifespan="off", interface="asgi3",
            log_level="warning", timeout_graceful_shutdown=1, access_log=False,
            proxy_headers=False, server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"fake-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._server.started and self._accepts():
                return self
            if not self._thread.is_alive():
                break
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("fake server did not start")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self._on_stop is not None:
            self._on_stop()  # wakes up requests stuck in a "hang" behaviour
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=2)
        self._server = None
        self._thread = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Exchange:
    """One HTTP request/response on the raw ASGI interface."""

    def __init__(self, scope: dict, receive: Callable, send: Callable, stopping: threading.Event):
        self.scope = scope
        self._receive = receive
        self._send = send
        self._stopping = stopping
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.raw_path: str = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        self.query_string: str = scope.get("query_string", b"").decode("latin-1")
        self.query: dict[str, str] = dict(parse_qsl(self.query_string, keep_blank_values=True))
        self.header_pairs: list[tuple[str, str]] = [
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])
        ]
        self.headers: dict[str, str] = {}
        for k, v in self.header_pairs:
            self.headers[k] = f"{self.headers[k]}, {v}" if k in self.headers else v
        self.body = b""
        self.json: Any = None
        self.json_error: str | None = None
        self.started = False
        self.completed = False
        self._watcher: asyncio.Future | None = None

    async def read_body(self) -> None:
        chunks = []
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.body = b"".join(chunks)
        if self.body:
            try:
                self.json = orjson.loads(self.body)
            except orjson.JSONDecodeError as exc:
                self.json_error = str(exc)

    def record(self) -> dict:
        return {
            "method": self.method, "path": self.path, "raw_path": self.raw_path,
            "query": dict(self.query), "headers": dict(self.headers), "json": self.json,
        }

    # -- replies -----------------------------------------------------------------
    async def start(self, status: int, content_type: str, headers: dict[str, str] | None = None) -> None:
        raw = [(b"content-type", content_type.encode())]
        raw += [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})
        self.started = True

    async def write(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self, data: bytes = b"") -> None:
        self.completed = True
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def respond(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        await self.start(status, content_type, {"content-length": str(len(body)), **(headers or {})})
        await self.finish(body)

    async def send_json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        await self.respond(status, orjson.dumps(obj), "application/json", headers)

    # -- the client side of the connection ------------------------------------------------
    def watch_client(self) -> asyncio.Future:
        """A future that completes when the client disconnects (or the response completes)."""
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._wait_disconnect())
        return self._watcher

    async def _wait_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass

    @property
    def client_gone(self) -> bool:
        return self._watcher is not None and self._watcher.done() and not self.completed

    # -- misbehaviour --------------------------------------------------------------
    async def abort(self) -> None:
        """Close the TCP connection now: no status line if nothing was sent, else no proper end."""
        transport = getattr(getattr(self._send, "__self__", None), "transport", None)
        if transport is None:  # not uvicorn: raising makes the server drop the connection
            raise ConnectionAbortedError("fake dropped the connection")
        transport.close()  # flushes what was written, then FIN: the chunked body never ends
        try:  # returns once the server has seen the connection go
            await asyncio.wait_for(asyncio.shield(self.watch_client()), timeout=2)
        except asyncio.TimeoutError:
            pass

    async def hang(self, limit: float = HANG_LIMIT_SECONDS) -> bool:
        """Never answer: wait until the server stops, the client leaves, or `limit` s pass, then
        close the connection. True when the client left first."""
        gone = self.watch_client()
        deadline = time.monotonic() + limit
        while not self._stopping.is_set() and not gone.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = gone.done()
        await self.abort()
        return left
