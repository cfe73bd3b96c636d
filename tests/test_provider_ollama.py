"""Ollama's native /api/chat and /api/embed: translation both ways, NDJSON stream decoding."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from providers.base import Deployment, Unsupported, Usage
from providers.ollama import OllamaAdapter
from tests import wire

A = OllamaAdapter()
DEP = Deployment(id="o", model_name="local", kind="ollama_chat", model="llama3.2", api_base="http://h:11434/")


@pytest.mark.parametrize(
    "body,expected",
    [
        ({"messages": [{"role": "user", "content": "hi"}]},
         {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
          "max_tokens": 5, "temperature": 0.2, "stop": ["x"]},
         {"model": "llama3.2", "messages": [{"role": "user", "content": "ab"}], "stream": False,
          "options": {"temperature": 0.2, "stop": ["x"], "num_predict": 5}}),
        ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}]},
         {"model": "llama3.2", "stream": False, "messages": [
             {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
             {"role": "tool", "content": "ok"}]}),
        ({"messages": [], "response_format": {"type": "json_object"}},
         {"model": "llama3.2", "messages": [], "stream": False, "format": "json"}),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}]}]},
         {"model": "llama3.2", "stream": False, "messages": [{"role": "user", "content": "", "images": ["QUJD"]}]}),
    ],
)
def test_chat_request(body: dict, expected: dict) -> None:
    req = wire.chat_request(A, DEP, {"model": "local", **body}, stream=False)
    assert req.url == "http://h:11434/api/chat"
    assert orjson.loads(req.body) == expected


def test_stream_flag_is_always_explicit() -> None:
    assert orjson.loads(wire.chat_request(A, DEP, {"messages": []}, stream=True).body)["stream"] is True


def test_unsupported() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}
    with pytest.raises(Unsupported):
        wire.chat_request(A, DEP, body, stream=False)


@pytest.mark.parametrize("param", ["n", "logprobs", "reasoning_effort", "seed_not_in_options"])
def test_declared_unsupported_params(param: str) -> None:
    """Ollama cannot honour these: the router refuses them or routes elsewhere (test_params.py)."""
    if param == "seed_not_in_options":
        assert "seed" in A.supported_params  # seed is an Ollama option: honoured
    else:
        assert param not in A.supported_params


def test_chat_response_with_tool_calls() -> None:
    raw = orjson.dumps({"model": "llama3.2", "message": {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": {"city": "Paris"}}}]}, "done": True, "done_reason": "stop",
        "prompt_eval_count": 12, "eval_count": 9})
    out, usage = wire.chat_response(A, DEP, raw)
    data = orjson.loads(out)
    assert usage == Usage(12, 9)
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"city":"Paris"}'}
    assert choice["message"]["tool_calls"][0]["id"] == "call_0"
    assert data["usage"]["total_tokens"] == 21 and data["model"] == "local"


NDJSON = b"".join(orjson.dumps(o) + b"\n" for o in [
    {"message": {"role": "assistant", "content": "Hel"}, "done": False},
    {"message": {"role": "assistant", "content": "lo"}, "done": False},
    {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "length",
     "prompt_eval_count": 5, "eval_count": 2},
])


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("piece", [1, 13, 10_000])
def test_stream_decoder(include_usage: bool, piece: int) -> None:
    d = wire.ClientStream(A, DEP, include_usage)
    out = []
    for i in range(0, len(NDJSON), piece):
        out += d.feed(NDJSON[i:i + piece])
    out += d.close()
    events = [orjson.loads(e[6:]) for e in out]
    assert len({e["id"] for e in events}) == 1
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == "Hello"
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"] and e["choices"][0]["finish_reason"]] == ["length"]
    assert (not events[-1]["choices"]) == include_usage
    assert d.done and d.usage == Usage(5, 2)


def test_stream_error_line() -> None:
    d = wire.ClientStream(A, DEP, False)
    d.feed(b'{"message": {"content": "a"}, "done": false}\n{"error": "out of memory"}\n')
    assert d.failure is not None and "out of memory" in d.failure.message and not d.done


@pytest.mark.parametrize("fmt", [None, "float", "base64"])
def test_embeddings(fmt: str | None) -> None:
    req = wire.embeddings_request(A, DEP, {"model": "local", "input": ["a b", "c"]})
    assert req.url == "http://h:11434/api/embed" and orjson.loads(req.body)["input"] == ["a b", "c"]
    out, usage = wire.embeddings_response(A, DEP, orjson.dumps({"embeddings": [[0.5, 1.0], [2.0, 0.25]],
                                                          "prompt_eval_count": 3}), fmt)
    data = orjson.loads(out)
    assert usage == Usage(3) and data["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    first = data["data"][0]["embedding"]
    if fmt == "base64":
        first = list(struct.unpack("<2f", base64.b64decode(first)))
    assert first == [0.5, 1.0]
