"""End to end: the official openai SDK -> a real `taskgate serve` -> each provider's strict fake.

One conformance suite, run against every provider kind: chat, streaming (with
and without usage), tools (whole and streamed), embeddings, sync and async.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Iterator

import openai
import pytest

from tests.conftest import Fakes, base_config, model_entry

KINDS = ["openai", "azure", "bedrock", "ollama", "vllm", "llamacpp"]
PROMPT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is the answer?"}]
PROMPT_WORDS = 3 + 4
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"},
                                                                          "unit": {"type": "string"}},
                                                           "required": ["city"]}}}]


def reply_text(name: str) -> str:
    return f"Hello from {name} the answer is 42."


@pytest.fixture(scope="module")
def gateway(fakes: Fakes, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import GatewayProcess

    models = []
    for kind in KINDS:
        models.append(model_entry(f"chat-{kind}", fakes.params(kind), id=f"{kind}-chat"))
        models.append(model_entry(f"embed-{kind}", fakes.params(kind, embeddings=True), id=f"{kind}-embed"))
    gw = GatewayProcess(base_config(redis_server.url, models), tmp_path_factory.mktemp("e2e"))
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: Any, fakes: Fakes) -> openai.OpenAI:
    fakes.reset()
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="no-auth", max_retries=0, timeout=20)


@pytest.fixture
def aclient(gateway: Any, fakes: Fakes) -> openai.AsyncOpenAI:
    fakes.reset()
    return openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="no-auth", max_retries=0, timeout=20)


@pytest.mark.parametrize("kind", KINDS)
def test_chat(client: openai.OpenAI, fakes: Fakes, kind: str) -> None:
    raw = client.chat.completions.with_raw_response.create(model=f"chat-{kind}", messages=PROMPT,
                                                           extra_headers={"X-Task-Id": f"t-chat-{kind}"})
    reply = raw.parse()
    assert reply.choices[0].message.content == reply_text(kind)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == PROMPT_WORDS == fakes.all[kind].billed.input_tokens
    assert reply.usage.completion_tokens == 7 == fakes.all[kind].billed.output_tokens
    assert raw.headers["x-task-id"] == f"t-chat-{kind}"
    assert raw.headers["x-taskgate-deployment"] == f"{kind}-chat"
    assert Decimal(raw.headers["x-request-cost-usd"]) >= 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("include_usage", [False, True])
def test_stream(client: openai.OpenAI, fakes: Fakes, kind: str, include_usage: bool) -> None:
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client.chat.completions.create(model=f"chat-{kind}", messages=PROMPT, stream=True, **extra))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply_text(kind)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert all(c.choices for c in chunks[:-1]), "only the usage chunk may have empty choices"
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and not chunks[-1].choices
        assert usage_chunks[0].usage.prompt_tokens == PROMPT_WORDS
        assert usage_chunks[0].usage.completion_tokens == 7
    else:
        assert usage_chunks == [], "a client that did not ask for usage gets no usage chunk"
    assert fakes.all[kind].billed.output_tokens == 7


@pytest.mark.parametrize("kind", KINDS)
def test_tools(client: openai.OpenAI, kind: str) -> None:
    reply = client.chat.completions.create(model=f"chat-{kind}", messages=PROMPT, tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}
    assert call.id

    # The tool result goes back and the model answers in text.
    follow = client.chat.completions.create(
        model=f"chat-{kind}", tools=TOOLS,
        messages=[*PROMPT, choice.message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"}],
    )
    assert follow.choices[0].message.content == reply_text(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_stream_tools(client: openai.OpenAI, kind: str) -> None:
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(model=f"chat-{kind}", messages=PROMPT, tools=TOOLS, stream=True):
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] = tc.id or slot["id"]
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "unit": "celsius"}


@pytest.mark.parametrize("kind", KINDS)
def test_embeddings(client: openai.OpenAI, fakes: Fakes, kind: str) -> None:
    # The SDK asks for base64 by default and decodes it.
    reply = client.embeddings.create(model=f"embed-{kind}", input="the quick brown fox")
    assert len(reply.data) == 1 and len(reply.data[0].embedding) == 8
    assert reply.usage.prompt_tokens == 4
    floats = client.embeddings.create(model=f"embed-{kind}", input="the quick brown fox", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(reply.data[0].embedding, rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
async def test_async_chat_and_stream(aclient: openai.AsyncOpenAI, kind: str) -> None:
    reply = await aclient.chat.completions.create(model=f"chat-{kind}", messages=PROMPT)
    assert reply.choices[0].message.content == reply_text(kind)
    stream = await aclient.chat.completions.create(model=f"chat-{kind}", messages=PROMPT, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == reply_text(kind)


def test_models_lists_public_names(client: openai.OpenAI) -> None:
    names = {m.id for m in client.models.list()}
    assert names == {f"{p}-{k}" for p in ("chat", "embed") for k in KINDS}


def test_metadata_is_stripped_before_openai(client: openai.OpenAI, fakes: Fakes) -> None:
    # OpenAI itself answers 400 to `metadata` without `store`; the gateway strips it.
    reply = client.chat.completions.create(model="chat-openai", messages=PROMPT,
                                           metadata={"task_id": "from-metadata"})
    assert reply.choices[0].message.content == reply_text("openai")
    assert "metadata" not in fakes.openai.requests[-1]["json"]


@pytest.mark.parametrize(
    "headers,body_extra,expected",
    [
        ({"X-Task-Id": "from-header", "x-litellm-trace-id": "from-litellm"}, {"metadata": {"task_id": "from-meta"}},
         "from-header"),
        ({"x-litellm-trace-id": "from-litellm"}, {"metadata": {"task_id": "from-meta"}}, "from-meta"),
        ({"x-litellm-trace-id": "from-litellm"}, {"litellm_session_id": "from-session"}, "from-litellm"),
        ({}, {"litellm_session_id": "from-session"}, "from-session"),
    ],
)
def test_task_id_sources_in_documented_order(client: openai.OpenAI, fakes: Fakes, headers: dict[str, str],
                                             body_extra: dict[str, Any], expected: str) -> None:
    raw = client.chat.completions.with_raw_response.create(model="chat-openai", messages=PROMPT,
                                                           extra_headers=headers, extra_body=body_extra)
    assert raw.headers["x-task-id"] == expected
    sent = fakes.openai.requests[-1]["json"]
    assert "metadata" not in sent and "litellm_session_id" not in sent


def test_generated_task_id_without_any_source(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="chat-openai", messages=PROMPT)
    assert raw.headers["x-task-id"].startswith("req-")
