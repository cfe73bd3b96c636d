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


TRICKY = [TextDelta('say "hi"\n\\ é \U0001F600 </script>'), TextDelta(""), ReasoningDelta("r"), TextDelta("again"),
          TextDelta("x" * 300), Finish("stop")]


def test_stream_events_are_exactly_what_orjson_writes_for_their_payloads() -> None:
    """The encoders write some events from pre-encoded pieces (text deltas, the first response):
    every event must still be byte for byte ``orjson.dumps`` of its payload, keys in the order
    the encoders have always written them."""
    front = ResponsesFront()
    front.parse({"model": "m", "input": "hi", "stream": True, "instructions": "é", "metadata": {"k": "v\n"}})
    responses = front.stream_encoder({}, "m")
    messages = MessagesFront().stream_encoder({}, "m")
    for encoder, events in ((responses, EVENTS + TRICKY), (messages, EVENTS + TRICKY)):
        data = b"".join(encoder.encode([ev]) for ev in events) + encoder.finish(USAGE)
        raw = [frame for frame in data.split(b"\n\n") if frame]
        for frame, (event, payload) in zip(raw, frames(data)):
            assert frame == b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload)
    got = frames(b"".join(responses.encode([ev]) for ev in TRICKY))
    fresh = ResponsesFront().stream_encoder({}, "m")
    text_deltas = [p for e, p in frames(b"".join(fresh.encode([ev]) for ev in TRICKY))
                   if e == "response.output_text.delta"]
    assert [list(p) for p in text_deltas] == [["item_id", "output_index", "content_index", "delta", "logprobs", "type",
                                               "sequence_number"]] * 4
    assert [p["delta"] for p in text_deltas] == [TRICKY[0].text, "", "again", "x" * 300]
    assert [p["output_index"] for p in text_deltas] == [0, 0, 2, 2]  # the reasoning item closed the first message
    assert got[0][1]["sequence_number"] == responses.seq - len(got)
    created, in_progress = frames(ResponsesFront().stream_encoder({}, "m").encode([]))
    assert [list(p) for _, p in (created, in_progress)] == [["response", "type", "sequence_number"]] * 2
    assert (created[1]["sequence_number"], in_progress[1]["sequence_number"]) == (0, 1)
    fresh_messages = MessagesFront().stream_encoder({}, "m")
    msg_deltas = [p for e, p in frames(b"".join(fresh_messages.encode([ev]) for ev in TRICKY))
                  if e == "content_block_delta" and p["delta"]["type"] == "text_delta"]
    assert [list(p) for p in msg_deltas] == [["index", "delta", "type"]] * 4
    assert [p["delta"] for p in msg_deltas] == [{"type": "text_delta", "text": t} for t in
                                                (TRICKY[0].text, "", "again", "x" * 300)]
    assert [p["index"] for p in msg_deltas] == [0, 0, 2, 2]
