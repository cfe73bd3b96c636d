"""Canonical stream events -> the Responses API's named SSE events, as they arrive.

    response.created, response.in_progress                      (the first event)
    text:      response.output_item.added, response.content_part.added,
               response.output_text.delta..., response.output_text.done,
               response.content_part.done, response.output_item.done
    reasoning: response.output_item.added, response.reasoning_summary_part.added,
               response.reasoning_summary_text.delta..., ...text.done, ...part.done,
               response.output_item.done
    tools:     response.output_item.added, response.function_call_arguments.delta...,
               response.function_call_arguments.done, response.output_item.done
    end:       response.completed | response.incomplete (with usage) | response.failed

Every event carries a ``sequence_number``. Nothing is buffered: each canonical
event is written the moment it is encoded. Items still open are closed when
another kind of item starts or the stream ends.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from gateway.errors import GatewayError
from gateway.fronts.responses_items import new_id
from providers.base import Usage
from providers.canonical import (
    Finish,
    FinishReason,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageReport,
)


class ResponseMaker(Protocol):
    """What the encoder needs from its front (gateway/fronts/responses.py's ResponsesFront)."""

    def response_object(self, model: str, status: str, output: list[dict[str, Any]],
                        usage: Usage | None, error: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def finished(self, response: dict[str, Any]) -> None: ...


class _Item:
    __slots__ = ("item", "index", "parts", "delta_head")

    def __init__(self, item: dict[str, Any], index: int) -> None:
        self.item = item
        self.index = index
        self.parts: list[str] = []
        self.delta_head = b""  # a text delta event's bytes up to the delta (see _text)


_TEXT_DELTA_TAIL = b',"logprobs":[],"type":"response.output_text.delta","sequence_number":'


class ResponsesStreamEncoder:
    content_type = b"text/event-stream"

    def __init__(self, front: ResponseMaker, model: str) -> None:
        self.front = front
        self.model = model
        self.seq = 0
        self.started = False
        self.items: list[_Item] = []  # by output_index
        self.open: _Item | None = None  # the open message or reasoning item
        self.calls: dict[int, _Item] = {}  # open function calls, by the canonical tool-call index
        self.reason: FinishReason = "stop"

    def _ev(self, kind: str, **fields: Any) -> bytes:
        fields["type"] = kind
        fields["sequence_number"] = self.seq
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(fields) + b"\n\n"

    def _response_ev(self, kind: str, response: bytes) -> bytes:
        """``_ev(kind, response=...)`` with the response object already encoded."""
        seq = self.seq
        self.seq += 1
        return b"event: %s\ndata: {\"response\":%s,\"type\":\"%s\",\"sequence_number\":%d}\n\n" % (
            kind.encode(), response, kind.encode(), seq)

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        response = orjson.dumps(self.front.response_object(self.model, "in_progress", [], None))  # once, for both
        return self._response_ev("response.created", response) + self._response_ev("response.in_progress", response)

    def _add(self, item: dict[str, Any]) -> tuple[_Item, bytes]:
        entry = _Item(item, len(self.items))
        self.items.append(entry)
        return entry, self._ev("response.output_item.added", output_index=entry.index, item=item)

    def encode(self, events: list[StreamEvent]) -> bytes:
        out = [self._start()]
        for ev in events:
            if isinstance(ev, TextDelta):
                out.append(self._text(ev.text))
            elif isinstance(ev, ReasoningDelta):
                out.append(self._reasoning(ev.text))
            elif isinstance(ev, ToolCallDelta):
                out.append(self._tool(ev))
            elif isinstance(ev, Finish):
                self.reason = ev.reason
            elif isinstance(ev, UsageReport):
                pass  # the usage the attempt loop accounts comes to finish()
        return b"".join(out)

    def _text(self, text: str) -> bytes:
        out = b""
        entry = self.open
        if entry is None or entry.item["type"] != "message":
            out = self._close_all()
            item = {"id": new_id("msg"), "type": "message", "status": "in_progress", "role": "assistant",
                    "content": []}
            entry, added = self._add(item)
            self.open = entry
            out += added + self._ev("response.content_part.added", item_id=item["id"], output_index=entry.index,
                                    content_index=0, part={"type": "output_text", "text": "", "annotations": []})
            # what _ev("response.output_text.delta", item_id=..., output_index=..., content_index=0,
            # delta=text, logprobs=[]) writes before the delta: the same for every delta of this item
            entry.delta_head = b"event: response.output_text.delta\ndata: " + orjson.dumps(
                {"item_id": item["id"], "output_index": entry.index, "content_index": 0})[:-1] + b',"delta":'
        entry.parts.append(text)
        seq = self.seq
        self.seq += 1
        return out + entry.delta_head + orjson.dumps(text) + _TEXT_DELTA_TAIL + b"%d}\n\n" % seq

    def _reasoning(self, text: str) -> bytes:
        out = b""
        entry = self.open
        if entry is None or entry.item["type"] != "reasoning":
            out = self._close_all()
            entry, added = self._add({"id": new_id("rs"), "type": "reasoning", "summary": []})
            self.open = entry
            out += added + self._ev("response.reasoning_summary_part.added", item_id=entry.item["id"],
                                    output_index=entry.index, summary_index=0,
                                    part={"type": "summary_text", "text": ""})
        entry.parts.append(text)
        return out + self._ev("response.reasoning_summary_text.delta", item_id=entry.item["id"],
                              output_index=entry.index, summary_index=0, delta=text)

    def _tool(self, ev: ToolCallDelta) -> bytes:
        out = b""
        entry = self.calls.get(ev.index)
        if entry is None:
            out = self._close_open()
            item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress",
                    "call_id": ev.id or new_id("call"), "name": ev.name or "", "arguments": ""}
            entry, added = self._add(item)
            self.calls[ev.index] = entry
            out += added
        elif ev.name and not entry.item["name"]:
            entry.item["name"] = ev.name
        if ev.arguments:
            entry.parts.append(ev.arguments)
            out += self._ev("response.function_call_arguments.delta", item_id=entry.item["id"],
                            output_index=entry.index, delta=ev.arguments)
        return out

    def _close_open(self) -> bytes:
        entry, self.open = self.open, None
        if entry is None:
            return b""
        item, text = entry.item, "".join(entry.parts)
        ids = {"item_id": item["id"], "output_index": entry.index}
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": []}
            item.update(status="completed", content=[part])
            out = self._ev("response.output_text.done", **ids, content_index=0, text=text, logprobs=[])
            out += self._ev("response.content_part.done", **ids, content_index=0, part=part)
        else:
            summary = {"type": "summary_text", "text": text}
            item["summary"] = [summary]
            out = self._ev("response.reasoning_summary_text.done", **ids, summary_index=0, text=text)
            out += self._ev("response.reasoning_summary_part.done", **ids, summary_index=0, part=summary)
        return out + self._ev("response.output_item.done", output_index=entry.index, item=item)

    def _close_all(self) -> bytes:
        out = [self._close_open()]
        for entry in self.calls.values():
            item = entry.item
            item.update(status="completed", arguments="".join(entry.parts))
            out.append(self._ev("response.function_call_arguments.done", item_id=item["id"],
                                output_index=entry.index, name=item["name"], arguments=item["arguments"]))
            out.append(self._ev("response.output_item.done", output_index=entry.index, item=item))
        self.calls = {}
        return b"".join(out)

    def finish(self, usage: Usage | None) -> bytes:
        out = self._start() + self._close_all()
        status = "incomplete" if self.reason == "length" else "completed"
        response = self.front.response_object(self.model, status, [e.item for e in self.items], usage or Usage())
        self.front.finished(response)
        return out + self._ev(f"response.{status}", response=response)

    def error(self, err: GatewayError) -> bytes:
        response = self.front.response_object(self.model, "failed", [e.item for e in self.items], None,
                                              {"code": err.code or err.type, "message": err.message})
        return self._start() + self._ev("response.failed", response=response)
