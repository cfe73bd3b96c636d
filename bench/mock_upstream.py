#!/usr/bin/env python3
"""A low-overhead OpenAI-compatible mock upstream for benchmarks.

Raw asyncio (uvloop when installed) + httptools, HTTP/1.1 keep-alive, no
framework. It must never be the bottleneck: run.py checks that the direct
RPS is at least 5x the RPS of every system under test.

Endpoints
  POST /v1/chat/completions   (also /chat/completions)
      non-streaming: a fixed chat.completion, usage {10, 5, 15}
      "stream": true: SSE over chunked transfer encoding, --chunks content
      chunks, a finish chunk, a usage chunk when
      stream_options.include_usage is true, then "data: [DONE]".
  GET  /v1/models             (also /models)
  GET  /health                (also /healthz, /readyz)
  GET  /stats                 {"requests": N, "chat": N, "stream": N}

Any Authorization header is accepted. --delay-ms is applied (asyncio.sleep,
never blocking) before the response headers are written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket

import httptools

try:
    import orjson

    def dumps(obj) -> bytes:
        return orjson.dumps(obj)

    loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is in the venv
    import json

    def dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    loads = json.loads

CREATED = 1700000000
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
CONTENT = "Hello from the mock upstream."
STATS = {"requests": 0, "chat": 0, "stream": 0}


def _response(status: bytes, body: bytes, ctype: bytes = b"application/json",
              keep_alive: bool = True) -> bytes:
    return b"".join((
        b"HTTP/1.1 ", status, b"\r\nContent-Type: ", ctype,
        b"\r\nContent-Length: ", str(len(body)).encode(),
        b"\r\nConnection: keep-alive\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n",
        body,
    ))


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Config:
    def __init__(self, delay_ms: float, chunks: int, chunk_interval_ms: float):
        self.delay = delay_ms / 1000.0
        self.chunks = max(1, chunks)
        self.interval = chunk_interval_ms / 1000.0
        self._cache: dict[tuple, object] = {}

    def completion(self, model: str) -> bytes:
        key = ("c", model)
        body = self._cache.get(key)
        if body is None:
            body = dumps({
                "id": "chatcmpl-bench0001",
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "system_fingerprint": "fp_bench",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT},
                    "logprobs": None,
                    "finish_reason": "stop",
                }],
                "usage": USAGE,
            })
            if len(self._cache) < 64:
                self._cache[key] = body
        return body

    def stream_events(self, model: str, include_usage: bool) -> list[bytes]:
        """Every SSE event of one streamed response, each already chunk-framed."""
        key = ("s", model, include_usage)
        events = self._cache.get(key)
        if events is not None:
            return events
        base = {
            "id": "chatcmpl-bench0001",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_bench",
        }
        extra = {"usage": None} if include_usage else {}
        out = []
        for i in range(self.chunks):
            delta = {"content": f"tok{i} "}
            if i == 0:
                delta = {"role": "assistant", "content": f"tok{i} "}
            out.append({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": None}], **extra})
        out.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                         "finish_reason": "stop"}], **extra})
        if include_usage:
            out.append({**base, "choices": [], "usage": USAGE})
        events = [_chunk(b"data: " + dumps(o) + b"\n\n") for o in out]
        events.append(_chunk(b"data: [DONE]\n\n"))
        if len(self._cache) < 64:
            self._cache[key] = events
        return events


STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
               b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n")
MODELS_BODY = dumps({"object": "list", "data": [
    {"id": "bench-model", "object": "model", "created": CREATED, "owned_by": "bench"}]})
HEALTH_BODY = b'{"status":"ok"}'
NOT_FOUND = dumps({"error": {"message": "not found", "type": "not_found_error",
                             "param": None, "code": None}})
BAD_REQ = dumps({"error": {"message": "invalid JSON body", "type": "invalid_request_error",
                           "param": None, "code": None}})


class HttpProtocol(asyncio.Protocol):
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.tail: asyncio.Future | None = None  # last slow response still being written
        self.closed = False
        self.can_write: asyncio.Event | None = None

    # asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc):
        self.closed = True
        if self.can_write is not None:
            self.can_write.set()

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.transport.close()
        except httptools.HttpParserError:
            if not self.closed:
                self.transport.write(_response(b"400 Bad Request", BAD_REQ, keep_alive=False))
                self.transport.close()

    def pause_writing(self):
        if self.can_write is None:
            self.can_write = asyncio.Event()
        self.can_write.clear()

    def resume_writing(self):
        if self.can_write is not None:
            self.can_write.set()

    # httptools callbacks ----------------------------------------------
    def on_message_begin(self):
        self.url = b""
        self.body = []

    def on_url(self, url):
        self.url += url

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        STATS["requests"] += 1
        method = self.parser.get_method()
        keep_alive = self.parser.should_keep_alive()
        path = self.url.split(b"?", 1)[0]
        body = b"".join(self.body)
        slow = None  # coroutine for responses that must wait
        if method == b"POST" and path in (b"/v1/chat/completions", b"/chat/completions"):
            STATS["chat"] += 1
            try:
                req = loads(body) if body else {}
                model = str(req.get("model") or "bench-model")
                stream = bool(req.get("stream"))
                so = req.get("stream_options") or {}
                include_usage = bool(so.get("include_usage")) if isinstance(so, dict) else False
            except Exception:
                self._send(_response(b"400 Bad Request", BAD_REQ, keep_alive=keep_alive), keep_alive)
                return
            if stream:
                STATS["stream"] += 1
                slow = self._stream(model, include_usage, keep_alive)
            elif self.cfg.delay:
                slow = self._delayed(_response(b"200 OK", self.cfg.completion(model),
                                               keep_alive=keep_alive), keep_alive)
            else:
                self._send(_response(b"200 OK", self.cfg.completion(model),
                                     keep_alive=keep_alive), keep_alive)
                return
        elif method == b"GET" and path in (b"/v1/models", b"/models"):
            self._send(_response(b"200 OK", MODELS_BODY, keep_alive=keep_alive), keep_alive)
            return
        elif method == b"GET" and path in (b"/health", b"/healthz", b"/readyz"):
            self._send(_response(b"200 OK", HEALTH_BODY, keep_alive=keep_alive), keep_alive)
            return
        elif method == b"GET" and path == b"/stats":
            self._send(_response(b"200 OK", dumps(STATS), keep_alive=keep_alive), keep_alive)
            return
        else:
            self._send(_response(b"404 Not Found", NOT_FOUND, keep_alive=keep_alive), keep_alive)
            return
        # Slow path: keep responses in request order on this connection.
        prev = self.tail
        self.tail = asyncio.ensure_future(self._after(prev, slow))

    # responses ----------------------------------------------------------
    def _send(self, data: bytes, keep_alive: bool):
        if self.tail is not None and not self.tail.done():
            # a pipelined request behind a slow one: keep the order
            async def later():
                self._write(data, keep_alive)
            self.tail = asyncio.ensure_future(self._after(self.tail, later()))
            return
        self._write(data, keep_alive)

    def _write(self, data: bytes, keep_alive: bool):
        if self.closed:
            return
        self.transport.write(data)
        if not keep_alive:
            self.transport.close()

    async def _after(self, prev, coro):
        if prev is not None:
            try:
                await prev
            except Exception:
                pass
        await coro

    async def _delayed(self, data: bytes, keep_alive: bool):
        await asyncio.sleep(self.cfg.delay)
        self._write(data, keep_alive)

    async def _drain(self):
        if self.can_write is not None and not self.can_write.is_set():
            await self.can_write.wait()

    async def _stream(self, model: str, include_usage: bool, keep_alive: bool):
        cfg = self.cfg
        if cfg.delay:
            await asyncio.sleep(cfg.delay)
        if self.closed:
            return
        events = cfg.stream_events(model, include_usage)
        head = STREAM_HEAD + (b"Connection: keep-alive\r\n\r\n" if keep_alive
                              else b"Connection: close\r\n\r\n")
        if not cfg.interval:
            self.transport.write(head + b"".join(events) + b"0\r\n\r\n")
        else:
            self.transport.write(head + events[0])
            for ev in events[1:]:
                await asyncio.sleep(cfg.interval)
                await self._drain()
                if self.closed:
                    return
                self.transport.write(ev)
            self.transport.write(b"0\r\n\r\n")
        if not keep_alive:
            self.transport.close()


async def serve(host: str, port: int, cfg: Config, backlog: int = 4096):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(cfg), host, port,
                                      backlog=backlog, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover
            pass
    print(f"mock upstream listening on http://{host}:{port} (delay {cfg.delay * 1000:g} ms, "
          f"{cfg.chunks} chunks, interval {cfg.interval * 1000:g} ms, pid {os.getpid()})",
          flush=True)
    async with server:
        await stop.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18000)
    ap.add_argument("--delay-ms", type=float, default=0.0,
                    help="wait this long (non-blocking) before every chat response")
    ap.add_argument("--chunks", type=int, default=20, help="content chunks per streamed response")
    ap.add_argument("--chunk-interval-ms", type=float, default=0.0,
                    help="pause between streamed chunks")
    args = ap.parse_args(argv)
    cfg = Config(args.delay_ms, args.chunks, args.chunk_interval_ms)
    coro = serve(args.host, args.port, cfg)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
