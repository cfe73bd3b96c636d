"""Decoding an OpenAI-compatible SSE stream into canonical events.

With ``passthrough`` (a Chat Completions client on an OpenAI-compatible
upstream: the hot path) each content chunk is emitted as a
:class:`~providers.canonical.RawChunk` holding the upstream's bytes, unparsed;
only chunks that may carry usage or an error are parsed. Without it, every
chunk is parsed into text, reasoning, tool-call and finish events.

* The usage chunk (``choices: []`` with ``usage``) becomes a ``UsageReport``;
  the gateway always asks the upstream for it, and the front decides whether
  its client sees it.
* A chunk with empty choices and no usage (Azure's first chunk with
  ``prompt_filter_results``) is dropped: OpenAI never sends one, and many
  clients index ``choices[0]``.
* An in-band ``{"error": ...}`` event ends the stream with a ``StreamError``.

With ``passthrough``, a read of whole single-line ``data:`` events (the usual
case: an upstream that writes ``data: {...}\n\n``, often several at once) is
not split at all: a few scans over the bytes find the events that need parsing
(usage, errors, empty choices, ``[DONE]``), and the bytes around them go on as
one ``RawChunk`` each. Anything else (``\r\n``, comments, multi-line events)
takes the event-by-event path, which gives the same bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.base import FailureReason, UpstreamFailure, Usage
from providers.canonical import (
    Finish,
    RawChunk,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageReport,
    finish_reason,
)
from providers.openai_wire import usage_from_openai


class OpenAIStreamDecoder:
    def __init__(self, passthrough: bool = False) -> None:
        self.passthrough = passthrough
        self.usage: Usage | None = None
        self.done = False
        self._failed = False
        self._buf = b""
        # passthrough: what was forwarded unparsed (payloads, or runs of whole ``data:`` events),
        # parsed only if text is needed
        self._plain: list[bytes] = []
        self._text: list[str] = []

    @property
    def text(self) -> list[str]:
        """The content and tool arguments streamed so far (for estimates when usage never came)."""
        out = list(self._text)
        for item in self._plain:
            for payload in _payloads(item):
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(chunk, dict):
                    _collect_text(chunk.get("choices") or [], out)
        return out

    def feed(self, data: bytes) -> list[StreamEvent]:
        buf = self._buf + data if self._buf else data
        if self.passthrough and not self.done and not self._failed and b"\r" not in buf:
            end = buf.rfind(b"\n\n") + 2
            if end < 2:
                self._buf = buf
                return []
            block = buf if end == len(buf) else buf[:end]
            events = self._run(block)
            if events is not None:
                self._buf = buf[end:]
                return events
        return self._split(buf)

    def _run(self, block: bytes) -> list[StreamEvent] | None:
        """The events of ``block`` (whole events) without splitting it, or None when it is not a run of
        single-line ``data:`` events (the event-by-event path then takes it)."""
        # every newline is in a separator, and every separator but the last is followed by "data: "
        if not block.startswith(b"data: ") or block.count(b"\n") != 2 * block.count(b"\n\ndata: ") + 2:
            return None
        cut = len(block)
        done = cut - len(DONE_EVENT) if block.endswith(DONE_EVENT) else block.find(DONE_EVENT)
        if done >= 0:
            if done and block[done - 2:done] != b"\n\n":
                return None  # "data: [DONE]" inside an event's text: rare, the careful path takes it
            cut = done
        out: list[StreamEvent] = []
        start = 0
        for s in _special_starts(block, cut):
            if s > start:
                self._plain.append(block[start:s])
                out.append(RawChunk(block[start:s]))
            e = block.find(b"\n\n", s)
            self._parse(block[s + 6:e], out)
            start = e + 2
            if self._failed:
                return out
        if cut > start:
            run = block if start == 0 and cut == len(block) else block[start:cut]
            self._plain.append(run)
            out.append(RawChunk(run))
        if done >= 0:
            self.done = True
        return out

    def _split(self, buf: bytes) -> list[StreamEvent]:
        """Event by event."""
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        out: list[StreamEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            self._event(buf[start:end], out)
            start = end + 2
        self._buf = buf[start:]
        return out

    def close(self) -> list[StreamEvent]:
        rest, self._buf = self._buf, b""
        out: list[StreamEvent] = []
        if rest.strip():
            self._event(rest.strip(), out)
        return out

    def _event(self, raw: bytes, out: list[StreamEvent]) -> None:
        payload = _data_of(raw)
        if payload is None or self.done or self._failed:
            return
        if payload == b"[DONE]":
            self.done = True
            return
        if self.passthrough and not _needs_parsing(payload):  # the common content chunk: bytes as they are
            framed = raw + b"\n\n" if raw.startswith(b"data: ") else b"data: " + payload + b"\n\n"
            self._plain.append(framed)
            out.append(RawChunk(framed))
            return
        self._parse(payload, out)

    def _parse(self, payload: bytes, out: list[StreamEvent]) -> None:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._fail(UpstreamFailure(FailureReason.PROTOCOL, 200, "invalid JSON in stream event"), out)
            return
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:
            self._fail(_stream_failure(chunk["error"]), out)
            return
        usage = usage_from_openai(chunk.get("usage"), chunk.get("service_tier"))
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices") or []
        if not choices:
            if usage is not None:
                out.append(UsageReport(usage, b"data: " + payload + b"\n\n"))
            return
        if self.passthrough:
            framed = b"data: " + payload + b"\n\n"
            self._plain.append(framed)
            out.append(RawChunk(framed))
            return
        _events_of(choices, out, self._text)

    def _fail(self, failure: UpstreamFailure, out: list[StreamEvent]) -> None:
        self._failed = True
        out.append(StreamError(failure))


def _events_of(choices: list[Any], out: list[StreamEvent], text: list[str]) -> None:
    """Canonical events from the first choice of a chunk (fronts other than Chat Completions take n=1)."""
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    if isinstance(delta, dict):
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            text.append(reasoning)
            out.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            text.append(content)
            out.append(TextDelta(content))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            fn = call.get("function") or {}
            args = fn.get("arguments") or ""
            text.append(args)
            out.append(ToolCallDelta(int(call.get("index") or 0), args, call.get("id"), fn.get("name")))
    if choice.get("finish_reason"):
        out.append(Finish(finish_reason(choice["finish_reason"])))


def _needs_parsing(payload: bytes) -> bool:
    """Could this chunk carry usage, an error, or empty choices? Most content chunks cannot."""
    if b'"error"' in payload or b'"choices":[]' in payload or b'"choices": []' in payload:
        return True
    return b'"usage"' in payload and b'"usage":null' not in payload and b'"usage": null' not in payload


DONE_EVENT = b"data: [DONE]\n\n"


def _special_starts(block: bytes, cut: int) -> list[int]:
    """Where the events of ``block[:cut]`` that _needs_parsing would parse start, in order (and perhaps
    a few more: parsing a content chunk gives the same bytes). Compact JSON costs a few scans."""
    starts: set[int] = set()
    i = block.find(b'"error"', 0, cut)
    while i >= 0:
        starts.add(_event_start(block, i))
        i = block.find(b'"error"', block.find(b"\n\n", i), cut)
    i = block.find(b"[]", 0, cut)
    while i >= 0:  # empty choices
        if block.endswith(b'"choices":', 0, i) or block.endswith(b'"choices": ', 0, i):
            starts.add(_event_start(block, i))
        i = block.find(b"[]", i + 2, cut)
    left = block.count(b'"usage"', 0, cut)
    if left:  # usage that is not null: usually one chunk, the last
        left -= block.count(b'"usage":null', 0, cut)
        hi = cut
        while left > 0:  # ('"usage": null' is counted in left: a spaced upstream walks back through all)
            i = block.rfind(b'"usage"', 0, hi)
            if i < 0:
                break
            hi = i
            if block.startswith(b":null", i + 7):
                continue
            left -= 1
            if not block.startswith(b": null", i + 7):
                starts.add(_event_start(block, i))
    return sorted(starts)


def _event_start(block: bytes, i: int) -> int:
    j = block.rfind(b"\n\n", 0, i)
    return 0 if j < 0 else j + 2


def _payloads(framed: bytes) -> list[bytes]:
    """The data of each event of forwarded SSE bytes."""
    return [p for ev in framed.split(b"\n\n") if ev and (p := _data_of(ev)) is not None]


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
