"""The anthropic adapter, without I/O: usage in OpenAI's semantics, the request it builds, its stream decoder."""

from __future__ import annotations

import orjson

from providers import ADAPTERS
from providers.anthropic_wire import messages_body, usage_from_anthropic
from providers.base import ApiKey, Deployment, Secret, Usage
from providers.canonical import ChatRequest, Finish, NativeBody, TextDelta, ToolCallDelta, UsageReport


def dep() -> Deployment:
    return Deployment("d", "m", "anthropic", "claude-sonnet-4-5-20250929", api_base="http://up",
                      credentials=ApiKey(Secret("sk-ant")))


def test_usage_adds_cache_reads_and_writes_back_into_input() -> None:
    u = usage_from_anthropic({"input_tokens": 4, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 20,
                              "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
                              "output_tokens": 7})
    assert u == Usage(input_tokens=34, output_tokens=7, cached_input_tokens=20, cache_write_tokens=10,
                      cache_write_1h_tokens=6)
    # message_delta updates only what it carries
    later = usage_from_anthropic({"output_tokens": 9}, u)
    assert later == Usage(input_tokens=34, output_tokens=9, cached_input_tokens=20, cache_write_tokens=10,
                          cache_write_1h_tokens=6)


def test_the_canonical_body_becomes_a_messages_request() -> None:
    body = {"model": "x", "max_tokens": 50, "stop": "END", "tool_choice": "required", "reasoning_effort": "low",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "messages": [{"role": "system", "content": [{"type": "text", "text": "sys",
                                                         "cache_control": {"type": "ephemeral"}}]},
                         {"role": "user", "content": "hi"},
                         {"role": "assistant", "content": None,
                          "tool_calls": [{"id": "c1", "type": "function",
                                          "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "ok"}]}
    out = messages_body(body, "claude", stream=False)
    assert out["system"] == [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}]
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "ok"}]}]
    assert out["stop_sequences"] == ["END"] and out["tool_choice"] == {"type": "any"}
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048} and out["max_tokens"] > 2048


def test_a_native_messages_body_goes_as_it_is_with_its_headers() -> None:
    native = {"model": "public", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
              "metadata": {"user_id": "u", "task_id": "t"}}
    req = ChatRequest({"model": "public", "messages": [{"role": "user", "content": "hi"}]},
                      native=NativeBody("anthropic", native, {"anthropic-beta": "b1"}))
    up = ADAPTERS["anthropic"].chat_request(dep(), req)
    assert orjson.loads(up.body) == {**native, "model": "claude-sonnet-4-5-20250929", "metadata": {"user_id": "u"}}
    assert up.headers["anthropic-beta"] == "b1" and up.headers["x-api-key"] == "sk-ant"
    assert up.url == "http://up/v1/messages"
    assert req.hands_through("anthropic", False) and not req.hands_through("bedrock", False)


SSE = b"".join(f"event: {e['type']}\ndata: {orjson.dumps(e).decode()}\n\n".encode() for e in [
    {"type": "message_start", "message": {"usage": {"input_tokens": 3, "cache_read_input_tokens": 2,
                                                    "output_tokens": 1}}},
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "f"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 6}},
    {"type": "message_stop"}])


def test_the_stream_decoder_translates_or_hands_through() -> None:
    decoder = ADAPTERS["anthropic"].stream_decoder(dep())
    events = [ev for i in range(0, len(SSE), 37) for ev in decoder.feed(SSE[i:i + 37])] + decoder.close()
    usage = Usage(input_tokens=5, output_tokens=6, cached_input_tokens=2)
    assert events == [TextDelta("Hi"), ToolCallDelta(0, "", "t1", "f"), ToolCallDelta(0, "{}"), Finish("tool_calls"),
                      UsageReport(usage)]
    assert decoder.done and decoder.usage == usage
    raw = ADAPTERS["anthropic"].stream_decoder(dep(), passthrough=True)
    chunks = raw.feed(SSE) + raw.close()
    assert all(isinstance(c, bytes) for c in chunks) and b"".join(chunks) == SSE  # byte for byte
    assert raw.done and raw.usage == usage
