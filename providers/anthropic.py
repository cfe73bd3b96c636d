"""Anthropic's own API: ``POST {api_base}/v1/messages`` with ``x-api-key`` and ``anthropic-version``.

Requests are built from the canonical chat body (:mod:`providers.anthropic_wire`),
except when the client spoke the Messages API itself (``ChatRequest.native``): then
its body goes as it is (only ``model`` becomes the deployment's), with its
``anthropic-version`` and ``anthropic-beta``, and the answer's bytes go back unchanged
(``RawChatResult``, ``RawChunk`` per SSE event, parsed only for usage);
answers and SSE events (``message_start``, ``content_block_*``, ``message_delta``,
``message_stop``, ``ping``, ``error``) become canonical results and events. Usage is
normalised to OpenAI's semantics: Anthropic's ``input_tokens`` excludes cache reads
(``cache_read_input_tokens``) and writes (``cache_creation_input_tokens``).
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from providers.anthropic_wire import KIND, STOP, SUPPORTED_PARAMS, messages_body, usage_from_anthropic
from providers.base import (
    ApiKey,
    Credentials,
    Deployment,
    FailureReason,
    Secret,
    Unsupported,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
)
from providers.canonical import (
    ChatRequest,
    ChatResult,
    EmbeddingsRequest,
    EmbeddingsResult,
    Finish,
    FinishReason,
    RawChatResult,
    RawChunk,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UsageReport,
)
from providers.openai import openai_failure

DEFAULT_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class AnthropicAdapter:
    kind = KIND
    required_params: tuple[str, ...] = ()
    supported_params: frozenset[str] | None = SUPPORTED_PARAMS
    passthrough = False

    def credentials(self, params: Mapping[str, Any]) -> Credentials:
        key = params.get("api_key")
        return ApiKey(Secret(str(key)) if key else None)

    def _headers(self, dep: Deployment) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        creds = dep.credentials
        if isinstance(creds, ApiKey) and creds.key is not None:
            headers["x-api-key"] = creds.key.get()
        return headers

    def chat_request(self, dep: Deployment, req: ChatRequest) -> UpstreamRequest:
        headers = self._headers(dep)
        native = req.native
        if native is not None and native.wire == KIND:
            body = {**native.body, "model": dep.model}
            metadata = body.get("metadata")
            if isinstance(metadata, dict) and set(metadata) - {"user_id"}:  # e.g. Taskgate's own task_id
                body["metadata"] = {k: v for k, v in metadata.items() if k == "user_id"}
            headers.update(native.headers)
        else:
            body = messages_body(req.body, dep.model, req.stream)
        base = (dep.api_base or DEFAULT_BASE).rstrip("/")
        url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
        return UpstreamRequest("POST", url, headers, orjson.dumps(body))

    def chat_response(self, dep: Deployment, raw: bytes, passthrough: bool = False) -> ChatResult | RawChatResult:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or data.get("type") != "message":
            raise ValueError("Anthropic answered without a message")
        if passthrough:  # a Messages client: these bytes go to it unchanged
            return RawChatResult(usage_from_anthropic(data.get("usage")), raw)
        texts, thinking, calls = [], [], []
        for block in data.get("content") or ():
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind == "thinking":
                thinking.append(str(block.get("thinking") or ""))
            elif kind == "tool_use":
                calls.append(ToolCall(str(block.get("id")), str(block.get("name")),
                                      orjson.dumps(block.get("input") or {}).decode()))
        return ChatResult("".join(texts) if texts or not calls else None,
                          STOP.get(str(data.get("stop_reason")), "stop"), usage_from_anthropic(data.get("usage")),
                          tuple(calls), "".join(thinking) or None, str(data.get("id") or "") or None)

    def stream_decoder(self, dep: Deployment, passthrough: bool = False) -> "AnthropicStreamDecoder":
        return AnthropicStreamDecoder(passthrough)

    def embeddings_request(self, dep: Deployment, req: EmbeddingsRequest) -> UpstreamRequest:
        raise Unsupported(KIND, "embeddings")

    def embeddings_response(self, dep: Deployment, raw: bytes) -> EmbeddingsResult:
        raise ValueError("Anthropic has no embeddings API")

    def error(self, dep: Deployment, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamFailure:
        failure = openai_failure(status, headers, raw)  # reads {"type": "error", "error": {"type", "message"}}
        if status == 529:  # overloaded_error
            return UpstreamFailure(FailureReason.UNAVAILABLE, status, failure.message, failure.retry_after)
        return failure


class AnthropicStreamDecoder:
    """Messages SSE (``event:`` + ``data:`` lines) -> canonical events."""

    def __init__(self, passthrough: bool = False) -> None:
        self.passthrough = passthrough  # emit each event's own bytes (RawChunk), parsed only for usage
        self.usage: Usage | None = None
        self.done = False
        self.text: list[str] = []
        self._buf = b""
        self._failed = False
        self._blocks: dict[int, int] = {}  # content block index -> tool-call index
        self._reason: FinishReason = "stop"

    def feed(self, data: bytes) -> list[StreamEvent]:
        frames = (self._buf + data).replace(b"\r\n", b"\n").split(b"\n\n")
        self._buf = frames.pop()
        out: list[StreamEvent] = []
        for frame in frames:
            out.extend(self._raw(frame) if self.passthrough else self._frame(frame))
        return out

    def close(self) -> list[StreamEvent]:
        rest, self._buf = self._buf, b""
        if not rest.strip():
            return []
        return self._raw(rest) if self.passthrough else self._frame(rest)

    def _raw(self, frame: bytes) -> list[StreamEvent]:
        """The event as the upstream sent it; only an error is turned into a StreamError."""
        if self.done or self._failed:
            return []
        events = self._frame(frame)
        if events and isinstance(events[-1], StreamError):
            return [events[-1]]
        return [RawChunk(frame + b"\n\n")] if frame.strip() else []

    def _frame(self, frame: bytes) -> list[StreamEvent]:
        if self.done or self._failed:
            return []
        payload = b"".join(line[5:].strip() for line in frame.split(b"\n") if line.startswith(b"data:"))
        if not payload:
            return []
        try:
            ev = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._failed = True
            return [StreamError(UpstreamFailure(FailureReason.PROTOCOL, 200, "invalid JSON in Anthropic stream"))]
        kind = ev.get("type")
        if kind == "error":
            self._failed = True
            err = ev.get("error") or {}
            reason = FailureReason.UNAVAILABLE if err.get("type") == "overloaded_error" else FailureReason.SERVER_ERROR
            return [StreamError(UpstreamFailure(reason, 200, str(err.get("message") or "stream error")))]
        if kind == "message_start":
            self.usage = usage_from_anthropic((ev.get("message") or {}).get("usage"))
        elif kind == "content_block_start":
            block = ev.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._blocks[int(ev.get("index", 0))] = len(self._blocks)
                return [ToolCallDelta(index, "", str(block.get("id")), str(block.get("name")))]
        elif kind == "content_block_delta":
            return self._delta(int(ev.get("index", 0)), ev.get("delta") or {})
        elif kind == "message_delta":
            self._reason = STOP.get(str((ev.get("delta") or {}).get("stop_reason")), "stop")
            self.usage = usage_from_anthropic(ev.get("usage"), self.usage)
        elif kind == "message_stop":
            self.done = True
            return [Finish(self._reason), UsageReport(self.usage or Usage())]
        return []

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            self.text.append(str(delta["text"]))
            return [TextDelta(str(delta["text"]))]
        if kind == "thinking_delta" and delta.get("thinking"):
            self.text.append(str(delta["thinking"]))
            return [ReasoningDelta(str(delta["thinking"]))]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._blocks:
            self.text.append(str(delta["partial_json"]))
            return [ToolCallDelta(self._blocks[index], str(delta["partial_json"]))]
        return []
