"""Canonical stream events -> Anthropic Messages SSE events, as they arrive.

    message_start, ping                                  (the first event)
    content_block_start / content_block_delta (text_delta, thinking_delta,
    input_json_delta) / content_block_stop               (one block at a time)
    message_delta (stop_reason, usage), message_stop     (the end)
    error                                                (in-band, once started)
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.fronts.messages_wire import STOP_REASONS, error_payload, usage_object
from providers.base import Usage
from providers.canonical import (
    Finish,
    FinishReason,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
)


def sse(kind: str, payload: dict[str, Any]) -> bytes:
    payload["type"] = kind
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class MessagesStreamEncoder:
    content_type = b"text/event-stream"

    def __init__(self, message_id: str, model: str) -> None:
        self.id = message_id
        self.model = model
        self.started = False
        self.blocks = 0  # content blocks started
        self.open: str | None = None  # "text", "thinking", or "tool:<index>"
        self.reason: FinishReason = "stop"
        self.raw = False  # an Anthropic upstream's own events are being handed through

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        message: dict[str, Any] = {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": usage_object(None)}
        return sse("message_start", {"message": message}) + sse("ping", {})

    def _block(self, key: str, block: dict[str, Any]) -> bytes:
        if self.open == key:
            return b""
        out = self._stop_block()
        self.open = key
        self.blocks += 1
        return out + sse("content_block_start", {"index": self.blocks - 1, "content_block": block})

    def _stop_block(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return sse("content_block_stop", {"index": self.blocks - 1})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return sse("content_block_delta", {"index": self.blocks - 1, "delta": delta})

    def _text_delta(self, text: str) -> bytes:
        """``_delta({"type": "text_delta", "text": text})``, written without building it."""
        return b'event: content_block_delta\ndata: {"index":%d,"delta":{"type":"text_delta","text":%s},' \
            b'"type":"content_block_delta"}\n\n' % (self.blocks - 1, orjson.dumps(text))

    def encode(self, events: list[StreamEvent]) -> bytes:
        if events and isinstance(events[0], bytes):  # RawChunks: the upstream's own Messages events
            self.raw = self.started = True
            return b"".join(ev for ev in events if isinstance(ev, bytes))
        out = [self._start()]
        for ev in events:
            if isinstance(ev, TextDelta):
                out.append(self._block("text", {"type": "text", "text": ""}))
                out.append(self._text_delta(ev.text))
            elif isinstance(ev, ReasoningDelta):
                out.append(self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""}))
                out.append(self._delta({"type": "thinking_delta", "thinking": ev.text}))
            elif isinstance(ev, ToolCallDelta):
                key = f"tool:{ev.index}"
                if ev.id is not None or self.open != key:
                    out.append(self._block(key, {"type": "tool_use", "id": ev.id or f"toolu_{ev.index}",
                                                 "name": ev.name or "", "input": {}}))
                if ev.arguments:
                    out.append(self._delta({"type": "input_json_delta", "partial_json": ev.arguments}))
            elif isinstance(ev, Finish):
                self.reason = ev.reason
        return b"".join(out)

    def finish(self, usage: Usage | None) -> bytes:
        if self.raw:
            return b""  # the upstream sent message_delta and message_stop itself
        out = self._start() + self._stop_block()
        delta = {"stop_reason": STOP_REASONS[self.reason], "stop_sequence": None}
        return out + sse("message_delta", {"delta": delta, "usage": usage_object(usage)}) + sse("message_stop", {})

    def error(self, err: GatewayError) -> bytes:
        return self._start() + sse("error", error_payload(err))
