"""OpenAI-compatible adapters (OpenAI, Azure, vLLM/llama.cpp) and the SSE decoder: bytes in, bytes out."""

from __future__ import annotations

import orjson
import pytest

from providers import ADAPTERS, parse_model
from providers.base import ApiKey, Deployment, FailureReason, Secret, Usage
from providers.canonical import Finish, StreamError, StreamEvent, TextDelta, UsageReport
from providers.openai_stream import OpenAIStreamDecoder
from tests import wire


def dep(kind: str, **kw: object) -> Deployment:
    base = {"openai": None, "azure": "https://r.openai.azure.com", "hosted_vllm": "http://127.0.0.1:8000/v1"}[kind]
    return Deployment(id="d", model_name="public", kind=kind, model="gpt-4o-mini", api_base=base,
                      credentials=ApiKey(Secret("k-123")), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kind,api_version,url,auth",
    [
        ("openai", None, "https://api.openai.com/v1/chat/completions", ("Authorization", "Bearer k-123")),
        ("azure", None, "https://r.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions"
                        "?api-version=2024-10-21", ("api-key", "k-123")),
        ("azure", "2025-01-01-preview", "https://r.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions"
                                        "?api-version=2025-01-01-preview", ("api-key", "k-123")),
        ("azure", "v1", "https://r.openai.azure.com/openai/v1/chat/completions", ("api-key", "k-123")),
        ("hosted_vllm", None, "http://127.0.0.1:8000/v1/chat/completions", ("Authorization", "Bearer k-123")),
    ],
)
def test_urls_and_auth(kind: str, api_version: str | None, url: str, auth: tuple[str, str]) -> None:
    req = wire.chat_request(ADAPTERS[kind], dep(kind, api_version=api_version), {"model": "public", "messages": []}, False)
    assert req.url == url
    assert req.headers[auth[0]] == auth[1]


@pytest.mark.parametrize(
    "kind,body,expected_keys",
    [
        ("openai", {"metadata": {"a": "b"}}, {"model", "messages"}),
        ("openai", {"metadata": {"a": "b"}, "store": True}, {"model", "messages", "metadata", "store"}),
        ("azure", {"metadata": {"a": "b"}, "store": True}, {"model", "messages", "store"}),
        ("hosted_vllm", {"metadata": {}, "litellm_session_id": "s"}, {"model", "messages"}),
        ("openai", {"tools": [], "user": "u"}, {"model", "messages", "tools", "user"}),
    ],
)
def test_client_only_fields_are_stripped(kind: str, body: dict, expected_keys: set[str]) -> None:
    req = wire.chat_request(ADAPTERS[kind], dep(kind), {"model": "public", "messages": [], **body}, False)
    sent = orjson.loads(req.body)
    assert set(sent) == expected_keys
    assert sent["model"] == "gpt-4o-mini"


@pytest.mark.parametrize("client_options", [None, {"include_usage": False}, {"include_usage": True}])
def test_streams_always_ask_for_usage(client_options: dict | None) -> None:
    body = {"model": "public", "messages": [], "stream": True}
    if client_options is not None:
        body["stream_options"] = client_options
    sent = orjson.loads(wire.chat_request(ADAPTERS["openai"], dep("openai"), body, True).body)
    assert sent["stream_options"]["include_usage"] is True
    assert body.get("stream_options") == client_options, "the client's body is not mutated"


def chunk(content: str | None = None, choices: bool = True, usage: dict | None = None, **extra: object) -> bytes:
    obj: dict = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", **extra}
    obj["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}] if choices else []
    if usage is not None or "usage" in extra:
        obj["usage"] = usage
    return b"data: " + orjson.dumps(obj) + b"\n\n"


USAGE = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
         "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 1}}
OPENAI_STREAM = chunk("Hel") + chunk("lo") + chunk(choices=False, usage=USAGE) + b"data: [DONE]\n\n"
AZURE_STREAM = (chunk(choices=False, prompt_filter_results=[{"prompt_index": 0}]) + chunk("Hel") + chunk("lo")
                + chunk(choices=False, usage=USAGE) + b"data: [DONE]\n\n")
LLAMACPP_STREAM = chunk("Hel") + chunk("lo") + chunk(choices=False, usage=USAGE, timings={"n": 1}) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("stream", [OPENAI_STREAM, AZURE_STREAM, LLAMACPP_STREAM, OPENAI_STREAM.replace(b"\n", b"\r\n")])
@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("piece", [1, 7, 10_000])
def test_sse_decoder(stream: bytes, include_usage: bool, piece: int) -> None:
    d = wire.ClientStream(ADAPTERS["openai"], dep("openai"), include_usage)
    out = []
    for i in range(0, len(stream), piece):
        out += d.feed(stream[i:i + piece])
    out += d.close()
    events = [orjson.loads(e[6:]) for e in out]
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in out)
    assert [e["choices"][0]["delta"]["content"] for e in events if e["choices"]] == ["Hel", "lo"]
    assert any(not e["choices"] for e in events) == include_usage, "usage chunk only when asked; no empty-choice chunk"
    assert d.done and d.failure is None
    assert d.usage == Usage(10, 3, cached_input_tokens=4, reasoning_tokens=1)
    assert d.text == ["Hel", "lo"]


def test_sse_decoder_in_band_error_and_early_end() -> None:
    d = wire.ClientStream(ADAPTERS["openai"], dep("openai"), False)
    out = d.feed(chunk("a") + b'data: {"error": {"message": "overloaded", "code": "server_error"}}\n\n' + chunk("b"))
    assert len(out) == 1 and d.failure is not None and d.failure.reason is FailureReason.SERVER_ERROR
    early = OpenAIStreamDecoder(passthrough=True)
    early.feed(chunk("a"))
    assert not early.done and early.usage is None


@pytest.mark.parametrize("piece", [1, 7, 10_000])
def test_sse_decoder_canonical_events(piece: int) -> None:
    """Without pass-through (a front other than Chat Completions) every chunk is parsed into events."""
    stream = AZURE_STREAM.replace(b'"delta":{"content":"lo"},"finish_reason":null', b'"delta":{"content":"lo"},"finish_reason":"stop"')
    d = OpenAIStreamDecoder(passthrough=False)
    events = []
    for i in range(0, len(stream), piece):
        events += d.feed(stream[i:i + piece])
    events += d.close()
    assert events == [TextDelta("Hel"), TextDelta("lo"), Finish("stop"),
                      UsageReport(Usage(10, 3, cached_input_tokens=4, reasoning_tokens=1), events[-1].raw)]
    assert d.done and d.text == ["Hel", "lo"]


@pytest.mark.parametrize(
    "status,headers,body,reason,retry_after",
    [
        (429, {"retry-after": "7"}, b'{"error": {"message": "slow", "type": "requests", "code": "rate_limit_exceeded"}}',
         FailureReason.RATE_LIMITED, 7.0),
        (429, {"retry-after-ms": "1500", "retry-after": "2"}, b'{"error": {"code": "429", "message": "x"}}',
         FailureReason.RATE_LIMITED, 1.5),
        (400, {}, b'{"error": {"code": "content_filter", "message": "filtered", "innererror": {}}}',
         FailureReason.CONTENT_FILTER, None),
        (401, {}, b'{"error": {"code": "401", "message": "Access denied"}}', FailureReason.AUTH, None),
        (404, {}, b'{"error": {"code": "404", "message": "Resource not found"}}', FailureReason.NOT_FOUND, None),
        (404, {}, b'{"error": "model \\"x\\" not found, try pulling it first"}', FailureReason.NOT_FOUND, None),
        (500, {}, b"<html>oops</html>", FailureReason.SERVER_ERROR, None),
        (503, {}, b"", FailureReason.UNAVAILABLE, None),
        (400, {}, b'{"error": {"message": "bad", "type": "invalid_request_error", "param": "x", "code": null}}',
         FailureReason.BAD_REQUEST, None),
    ],
)
def test_error_mapping(status: int, headers: dict, body: bytes, reason: FailureReason, retry_after: float | None) -> None:
    f = ADAPTERS["openai"].error(dep("openai"), status, headers, body)
    assert (f.reason, f.status, f.retry_after) == (reason, status, retry_after)
    assert f.message


@pytest.mark.parametrize(
    "model,expected",
    [("openai/gpt-4o", ("openai", "gpt-4o")), ("bedrock/converse/anthropic.x:0", ("bedrock", "anthropic.x:0")),
     ("hosted_vllm/Qwen/Qwen2.5-7B", ("hosted_vllm", "Qwen/Qwen2.5-7B")), ("ollama_chat/llama3.2:3b", ("ollama_chat", "llama3.2:3b"))],
)
def test_parse_model(model: str, expected: tuple[str, str]) -> None:
    assert parse_model(model) == expected


# --- pass-through of whole reads (the stream hot path) -----------------------------------------


class EventByEvent(OpenAIStreamDecoder):
    """The reference: the event-by-event path only."""

    def feed(self, data: bytes) -> list[StreamEvent]:
        return self._split(self._buf + data)


def decoded(d: OpenAIStreamDecoder, stream: bytes, piece: int) -> tuple[bytes, Usage | None, bool, str | None, list[str]]:
    events: list[StreamEvent] = []
    for i in range(0, len(stream), piece):
        events += d.feed(stream[i:i + piece])
    events += d.close()
    sent = b"".join(e if isinstance(e, bytes) else e.raw or b"" if isinstance(e, UsageReport) else b"" for e in events)
    failure = next((e.failure.message for e in events if isinstance(e, StreamError)), None)
    return sent, d.usage, d.done, failure, d.text


SPACED = (b'data: {"id": "c1", "choices": [{"index": 0, "delta": {"content": "a"}}], "usage": null}\n\n'
          b'data: {"id": "c1", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}\n\n'
          b"data: [DONE]\n\n")
EDGE_STREAMS = [
    OPENAI_STREAM, AZURE_STREAM, LLAMACPP_STREAM, SPACED,
    chunk("a", usage=None) + chunk("b", usage=None) + chunk(choices=False, usage=USAGE) + b"data: [DONE]\n\n",
    chunk("a") + chunk("b", usage=USAGE) + b"data: [DONE]\n\n",  # usage on a chunk with choices
    chunk("say data: [DONE] and [] and usage") + chunk(choices=False, usage=USAGE) + b"data: [DONE]\n\n",
    chunk("a") + b'data: {"error": {"message": "overloaded", "code": "server_error"}}\n\n' + chunk("b"),
    chunk("a") + b"data: {not json, \"usage\": 1}\n\n" + chunk("b") + b"data: [DONE]\n\n",
    chunk("a") + b": keep-alive\n\n" + chunk("b") + b"data: [DONE]\n\n",  # a comment: the careful path
    chunk("a") + b"data: [DONE]\n\n" + chunk("after the end"),
    chunk("a") + b"\n\n" + chunk("b") + b"data: [DONE]\n\n",
    chunk("a") + chunk(choices=False, usage=USAGE),  # no [DONE]
]


@pytest.mark.parametrize("stream", EDGE_STREAMS)
@pytest.mark.parametrize("piece", [1, 5, 64, 10_000])
def test_whole_reads_give_the_same_bytes_usage_and_end_as_event_by_event(stream: bytes, piece: int) -> None:
    assert decoded(OpenAIStreamDecoder(passthrough=True), stream, piece) == decoded(
        EventByEvent(passthrough=True), stream, piece)


def test_a_read_of_content_chunks_is_passed_on_unsplit() -> None:
    data = chunk("a") + chunk("b") + chunk("c")
    events = OpenAIStreamDecoder(passthrough=True).feed(data)
    assert events == [data] and events[0] is data, "one RawChunk: the read itself, not a join of its events"


def test_a_read_with_the_usage_chunk_and_done_is_cut_only_around_usage() -> None:
    content = chunk("a") + chunk("b")
    usage = chunk(choices=False, usage=USAGE)
    d = OpenAIStreamDecoder(passthrough=True)
    events = d.feed(content + usage + b"data: [DONE]\n\n")
    assert events == [content, UsageReport(d.usage, usage)]  # type: ignore[arg-type]
    assert d.done and d.usage == Usage(10, 3, cached_input_tokens=4, reasoning_tokens=1)
    assert d.text == ["a", "b"]
