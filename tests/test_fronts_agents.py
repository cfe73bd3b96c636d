"""The Responses and Messages stream encoders, pure: canonical events in, the API's SSE events out."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import UpstreamError
from gateway.fronts.messages import MessagesFront
from gateway.fronts.responses import ResponsesFront
from providers.base import Usage
from providers.canonical import Finish, ReasoningDelta, TextDelta, ToolCallDelta

EVENTS = [ReasoningDelta("think"), ReasoningDelta("ing"), TextDelta("Hi"), TextDelta("!"),
          ToolCallDelta(0, "", "call_1", "f"), ToolCallDelta(0, '{"a"'), ToolCallDelta(0, ": 1}"), Finish("tool_calls")]
USAGE = Usage(input_tokens=10, output_tokens=5, cached_input_tokens=4, reasoning_tokens=2)


def frames(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in data.split(b"\n\n"):
        if frame.strip():
            event, payload = frame.split(b"\n", 1)
            out.append((event[len(b"event: "):].decode(), orjson.loads(payload[len(b"data: "):])))
    return out


def test_responses_events_in_openais_order_with_reasoning_summaries() -> None:
    front = ResponsesFront()
    front.parse({"model": "m", "input": "hi", "stream": True})
    encoder = front.stream_encoder({}, "m")
    data = b"".join(encoder.encode([ev]) for ev in EVENTS) + encoder.finish(USAGE)
    got = frames(data)
    assert [e for e, _ in got] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [p["sequence_number"] for _, p in got] == list(range(len(got)))
    assert all(p["type"] == e for e, p in got)
    done = got[-1][1]["response"]
    assert [i["type"] for i in done["output"]] == ["reasoning", "message", "function_call"]
    assert done["output"][0]["summary"] == [{"type": "summary_text", "text": "thinking"}]
    assert done["output"][2]["arguments"] == '{"a": 1}' and done["output"][2]["call_id"] == "call_1"
    assert done["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5,
                             "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 15}
    assert front.completed == done
    assert front.conversation()[-1] == {"role": "assistant", "content": "Hi!", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}


def test_responses_length_is_incomplete_and_a_failure_is_failed() -> None:
    front = ResponsesFront()
    front.parse({"model": "m", "input": "hi"})
    encoder = front.stream_encoder({}, "m")
    assert frames(encoder.encode([TextDelta("a"), Finish("length")]) + encoder.finish(None))[-1][0] \
        == "response.incomplete"
    failing = ResponsesFront().stream_encoder({}, "m")
    event, payload = frames(failing.error(UpstreamError("boom")))[-1]
    assert event == "response.failed" and payload["response"]["error"]["message"] == "boom"


def test_messages_events_with_thinking_text_and_tool_use() -> None:
    encoder = MessagesFront().stream_encoder({}, "m")
    got = frames(b"".join(encoder.encode([ev]) for ev in EVENTS) + encoder.finish(USAGE))
    assert [e for e, _ in got] == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    starts = [p["content_block"]["type"] for e, p in got if e == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    deltas = [p["delta"]["type"] for e, p in got if e == "content_block_delta"]
    assert deltas == ["thinking_delta"] * 2 + ["text_delta"] * 2 + ["input_json_delta"] * 2
    assert [p["index"] for e, p in got if e == "content_block_start"] == [0, 1, 2]
    delta = got[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["input_tokens"] == 6 and delta["usage"]["cache_read_input_tokens"] == 4
    error = frames(MessagesFront().stream_encoder({}, "m").error(UpstreamError("boom")))[-1]
    assert error == ("error", {"type": "error", "error": {"type": "api_error", "message": "boom"}})
