"""The OpenAI Chat Completions front: ``POST /v1/chat/completions``.

The canonical request already is a Chat Completions body, so parsing is
validation. Answers from an OpenAI-compatible upstream go to the client as the
upstream sent them (the hot path); others are encoded here from canonical
results and events.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from gateway.errors import BadRequest, GatewayError, error_body, error_headers
from gateway.fronts.base import Headers
from providers.base import MAX_USAGE_TOKENS, Usage
from providers.canonical import (
    ChatRequest,
    ChatResult,
    Finish,
    RawChatResult,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageReport,
)
from providers.openai_wire import ChunkWriter, chat_completion

DONE = b"data: [DONE]\n\n"


def check_stream_fields(body: Mapping[str, Any]) -> None:
    """``stream`` and ``stream_options`` decide how the gateway reads the answer: never guess."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream", code="invalid_type")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object", param="stream_options", code="invalid_type")
    if isinstance(options, dict) and not isinstance(options.get("include_usage", False), bool):
        raise BadRequest("'stream_options.include_usage' must be a boolean", param="stream_options.include_usage",
                         code="invalid_type")


MAX_CHOICES = 128  # OpenAI's limit on ``n``


def check_choices(body: Mapping[str, Any]) -> None:
    """``n`` multiplies what one request costs (and its budget's worst case): a whole number in [1, 128]."""
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CHOICES):
        raise BadRequest(f"'n' must be an integer from 1 to {MAX_CHOICES}", param="n", code="invalid_value")


TOKEN_LIMITS = ("max_tokens", "max_completion_tokens")


def check_token_limits(body: Mapping[str, Any]) -> None:
    """The output limits decide a budget's worst case: whole numbers, 0 to the usage bound (1e8)."""
    for name in TOKEN_LIMITS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not 0 <= value <= MAX_USAGE_TOKENS):
            raise BadRequest(f"'{name}' must be an integer from 0 to {MAX_USAGE_TOKENS}", param=name,
                             code="invalid_value")


class ChatCompletionsFront:
    name = "chat"
    takes_chat_bytes = True

    def parse(self, body: dict[str, Any]) -> ChatRequest:
        check_stream_fields(body)
        check_choices(body)
        check_token_limits(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("'messages' must be an array of message objects", param="messages", code="invalid_type")
        return ChatRequest.of(body)

    def encode_result(self, result: ChatResult | RawChatResult, model: str) -> bytes:
        if result.raw is not None:
            return result.raw
        assert isinstance(result, ChatResult)
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.reasoning:
            message["reasoning_content"] = result.reasoning
        if result.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}}
                                     for c in result.tool_calls]
        return chat_completion(model, message, result.finish_reason, result.usage, result.id)

    def stream_encoder(self, body: Mapping[str, Any], model: str) -> "ChatStreamEncoder":
        options = body.get("stream_options")
        return ChatStreamEncoder(model, bool(isinstance(options, dict) and options.get("include_usage")))

    def error_response(self, err: GatewayError) -> tuple[int, Headers, bytes]:
        return err.status, error_headers(err), error_body(err)


class ChatStreamEncoder:
    """Canonical events -> ``chat.completion.chunk`` SSE events; upstream chunks as they are."""

    content_type = b"text/event-stream"

    def __init__(self, model: str, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.model = model
        self._chunks: ChunkWriter | None = None  # made when first needed: pass-through streams never need it
        self._role_sent = False

    @property
    def _writer(self) -> ChunkWriter:
        if self._chunks is None:
            self._chunks = ChunkWriter(self.model, self.include_usage)
        return self._chunks

    def encode(self, events: list[StreamEvent]) -> bytes:
        parts = [ev if isinstance(ev, bytes) else self._one(ev) for ev in events]  # bytes: a RawChunk, as it is
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _one(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, bytes):  # a RawChunk
            return ev
        if isinstance(ev, TextDelta):
            return self._delta({"content": ev.text})
        if isinstance(ev, ReasoningDelta):
            return self._delta({"reasoning_content": ev.text})
        if isinstance(ev, ToolCallDelta):
            function: dict[str, Any] = {"arguments": ev.arguments}
            call: dict[str, Any] = {"index": ev.index, "function": function}
            if ev.id is not None:
                call.update(id=ev.id, type="function")
            if ev.name is not None:
                function["name"] = ev.name
            return self._delta({"tool_calls": [call]})
        if isinstance(ev, Finish):
            return self._delta({}, ev.reason)
        if isinstance(ev, UsageReport):
            if not self.include_usage:
                return b""
            return ev.raw if ev.raw is not None else self._writer.usage(ev.usage)
        return b""  # StreamError: the attempt loop decides what the client sees

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if self._role_sent:
            return self._writer.delta(delta, finish)
        self._role_sent = True  # like OpenAI: the first chunk names the role, with empty content
        return self._writer.delta({"role": "assistant", "content": ""}) + self._writer.delta(delta, finish)

    def finish(self, usage: Usage | None) -> bytes:
        return DONE

    def error(self, err: GatewayError) -> bytes:
        payload = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
        return b"data: " + orjson.dumps(payload) + b"\n\n"
