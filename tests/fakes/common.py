"""What every fake shares: billing counters, the behaviour queue, deterministic replies,
token counting, embeddings, and the `BaseFake` lifecycle around `FakeServer`."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from .server import Exchange, FakeServer

BEHAVIOURS = ("429", "500", "503", "hang", "drop", "midstream_error")

TOOL_ARGUMENTS = {"city": "Paris", "unit": "celsius"}
TOOL_ARGUMENTS_JSON = '{"city": "Paris", "unit": "celsius"}'
# The arguments in 3 stream fragments; they concatenate to TOOL_ARGUMENTS_JSON.
TOOL_ARGUMENT_PIECES = ('{"city": ', '"Paris", "unit": ', '"celsius"}')
TOOL_OUTPUT_TOKENS = 9  # billed for one tool call, 3 per streamed piece
EMBEDDING_DIMENSIONS = 8


def reply_words(name: str) -> list[str]:
    return ["Hello", "from", name, "the", "answer", "is", "42."]


def stream_pieces(name: str) -> list[str]:
    """One word per content event; every word after the first keeps its leading space."""
    words = reply_words(name)
    return [words[0]] + [" " + w for w in words[1:]]


def count_words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """Deterministic vector in [-1, 1), every value exactly representable as float32."""
    out = []
    for i in range(dimensions):
        digest = hashlib.sha256(f"{i}:{text}".encode()).digest()
        x = int.from_bytes(digest[:4], "big") / 2**31 - 1.0
        out.append(struct.unpack("<f", struct.pack("<f", x))[0])
    return out


class Billed:
    """What the provider would bill; safe to update from the server thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_input_tokens = 0

    def add(self, *, input_tokens: int = 0, output_tokens: int = 0, cached_input_tokens: int = 0) -> None:
        with self._lock:
            self.requests += 1
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            self.cached_input_tokens += cached_input_tokens

    def reset(self) -> None:
        with self._lock:
            self.requests = self.input_tokens = self.output_tokens = self.cached_input_tokens = 0

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "input_tokens": self.input_tokens,
                    "output_tokens": self.output_tokens, "cached_input_tokens": self.cached_input_tokens}

    def __repr__(self) -> str:
        return f"Billed({self.as_dict()})"


@dataclass
class Behaviour:
    kind: str
    kw: dict = field(default_factory=dict)


@dataclass
class Usage:
    """Tokens of one answered request, OpenAI semantics (input includes cached)."""
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0  # prompt-cache writes, also part of input_tokens

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class Event:
    """One streamed frame/line/SSE event. `content` events count for drop/midstream_error."""
    data: bytes
    content: bool = False
    tokens: int = 0


class BaseFake:
    """Lifecycle, recording, billing and the behaviour queue. Subclasses implement `handle`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[dict] = []
        self.billed = Billed()
        self.cached_tokens = 0
        self.chunk_delay = 0.0  # seconds between streamed events
        self.delay = 0.0  # seconds before answering each request (a slow provider)
        self.disconnects = 0  # requests whose client went away before the response ended
        # A misbehaving upstream: fields that replace the usage it reports (e.g. {"prompt_tokens": -1000});
        # what it bills stays the real usage.
        self.usage_report: dict[str, Any] | None = None
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: FakeServer | None = None

    # -- public API ------------------------------------------------------------------
    def fail(self, behaviour: str, times: int = 1, **kw: Any) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; expected one of {BEHAVIOURS}")
        with self._lock:
            self._queue.extend(Behaviour(behaviour, dict(kw)) for _ in range(times))

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.disconnects = 0
            self.delay = self.chunk_delay = 0.0
            self.usage_report = None
        self.requests.clear()
        self.billed.reset()
        if hasattr(self, "prompt_cache"):
            self.prompt_cache.clear()

    def start(self):
        self._stopping.clear()
        if self._server is None:
            self._server = FakeServer(self.app, on_stop=self._stopping.set)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._server.url

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- ASGI ------------------------------------------------------------------------
    async def app(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return
        ex = Exchange(scope, receive, send, self._stopping)
        await ex.read_body()
        self.requests.append(ex.record())
        if self.delay:
            await asyncio.sleep(self.delay)
        await self.handle(ex)

    async def handle(self, ex: Exchange) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------------
    def next_behaviour(self) -> Behaviour | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def usage_for(self, input_tokens: int, output_tokens: int) -> Usage:
        cached = min(max(int(self.cached_tokens), 0), input_tokens)
        return Usage(input_tokens, output_tokens, cached)

    def bill(self, usage: Usage, output_tokens: int | None = None) -> None:
        self.billed.add(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens if output_tokens is None else output_tokens,
            cached_input_tokens=usage.cached_tokens,
        )

    async def hang(self, ex: Exchange) -> None:
        if await ex.hang():
            self._count_disconnect()

    def _count_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    async def run_stream(self, ex: Exchange, events: Iterable[Event], usage: Usage,
                         behaviour: Behaviour | None, error_event: bytes | None) -> None:
        """Send a started stream's events; "drop"/"midstream_error" cut it after 2 content events.
        A client that goes away stops the stream; input and the output sent so far are billed."""
        events = list(events)
        content_idx = [i for i, e in enumerate(events) if e.content]
        cut = content_idx[min(1, len(content_idx) - 1)] if content_idx else 0
        sent_tokens = 0
        ex.watch_client()
        for i, ev in enumerate(events):
            if self.chunk_delay and i:
                await asyncio.sleep(self.chunk_delay)
            if ex.client_gone:
                self._count_disconnect()
                self.bill(usage, output_tokens=sent_tokens)
                return
            await ex.write(ev.data)
            sent_tokens += ev.tokens
            if behaviour and behaviour.kind in ("drop", "midstream_error") and i == cut:
                self.bill(usage, output_tokens=sent_tokens)
                if behaviour.kind == "drop":
                    await ex.abort()
                else:
                    await ex.finish(error_event or b"")
                return
        self.bill(usage)
        await ex.finish()
