"""Decoding an OpenAI-compatible SSE stream, passing events through unchanged."""

from __future__ import annotations

from typing import Any

import orjson

from providers.base import FailureReason, UpstreamFailure, Usage
from providers.openai_wire import usage_from_openai


class OpenAIStreamDecoder:
    """Forwards each upstream event's bytes as they are, and reads usage.

    * The usage chunk (``choices: []`` with ``usage``) is forwarded only when the
      client asked for it; the gateway always asks the upstream for it.
    * A chunk with empty choices and no usage (Azure's first chunk with
      ``prompt_filter_results``) is dropped: OpenAI never sends one, and many
      clients index ``choices[0]``.
    * An in-band ``{"error": ...}`` event ends the stream with a failure.
    """

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.done = False
        self.failure: UpstreamFailure | None = None
        self._buf = b""
        self._plain: list[bytes] = []  # forwarded without parsing; parsed only if text is needed

    @property
    def text(self) -> list[str]:
        """The content and tool arguments streamed so far (for estimates when usage never came)."""
        out: list[str] = []
        for payload in self._plain:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(chunk, dict):
                _collect_text(chunk.get("choices") or [], out)
        return out

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            event = self._event(buf[start:end])
            if event is not None:
                out.append(event)
            start = end + 2
        self._buf = buf[start:]
        return out

    def close(self) -> list[bytes]:
        rest, self._buf = self._buf, b""
        if rest.strip():
            event = self._event(rest.strip())
            return [event] if event is not None else []
        return []

    def _event(self, raw: bytes) -> bytes | None:
        payload = _data_of(raw)
        if payload is None or self.done or self.failure:
            return None
        if payload == b"[DONE]":
            self.done = True
            return None
        if not _needs_parsing(payload):  # the common content chunk: forward the bytes as they are
            self._plain.append(payload)
            return raw + b"\n\n" if raw.startswith(b"data: ") else b"data: " + payload + b"\n\n"
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.failure = UpstreamFailure(FailureReason.PROTOCOL, 200, "invalid JSON in stream event")
            return None
        if not isinstance(chunk, dict):
            return None
        if "error" in chunk:
            self.failure = _stream_failure(chunk["error"])
            return None
        usage = usage_from_openai(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices") or []
        if not choices:
            return b"data: " + payload + b"\n\n" if usage is not None and self.include_usage else None
        self._plain.append(payload)
        return b"data: " + payload + b"\n\n"


def _needs_parsing(payload: bytes) -> bool:
    """Could this chunk carry usage, an error, or empty choices? Most content chunks cannot."""
    if b'"error"' in payload or b'"choices":[]' in payload or b'"choices": []' in payload:
        return True
    return b'"usage"' in payload and b'"usage":null' not in payload and b'"usage": null' not in payload


def _collect_text(choices: list[Any], out: list[str]) -> None:
    for choice in choices:
        delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
        if delta.get("content"):
            out.append(delta["content"])
        for call in delta.get("tool_calls") or ():
            args = (call.get("function") or {}).get("arguments")
            if args:
                out.append(args)


def _data_of(raw: bytes) -> bytes | None:
    """The data of one SSE event (``data:`` lines joined), or None for comments."""
    if raw.startswith(b"data: ") and b"\n" not in raw:
        return raw[6:]
    lines = [line[5:].lstrip(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def _stream_failure(err: Any) -> UpstreamFailure:
    if isinstance(err, dict):
        message = str(err.get("message") or "error in stream")
        code = err.get("code")
        reason = FailureReason.RATE_LIMITED if code in ("rate_limit_exceeded", "429") else FailureReason.SERVER_ERROR
        return UpstreamFailure(reason, 200, message, code=str(code) if code is not None else None)
    return UpstreamFailure(FailureReason.SERVER_ERROR, 200, str(err))
