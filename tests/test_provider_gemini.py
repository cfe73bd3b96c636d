"""Gemini (Google AI Studio) and Vertex AI, end to end: the openai SDK -> a real `taskgate serve` ->
strict fakes that check the wire (paths, the API key or a service account's token made by
google-auth, the body), and usage metadata priced from LiteLLM's map."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest

from providers import ADAPTERS
from providers.base import ApiKey, Deployment, GoogleServiceAccount, Secret, Usage
from providers.canonical import ChatRequest, Finish, TextDelta, ToolCallDelta, UsageReport
from providers.gemini_wire import gemini_body, usage_from_gemini
from tests.conftest import GatewayProcess, base_config, model_entry
from tests.fakes.gemini_fake import GeminiFake
from tests.fakes.google_sa import service_account_json

# LiteLLM's map: gemini/gemini-2.5-flash and (Vertex) gemini-2.5-flash
PRICE_IN, PRICE_OUT, PRICE_CACHED = Decimal("3e-7"), Decimal("2.5e-6"), Decimal("3e-8")
PROMPT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is the answer?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_usage_metadata_in_openai_semantics() -> None:
    u = usage_from_gemini({"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
                           "cachedContentTokenCount": 40, "totalTokenCount": 150})
    assert u == Usage(input_tokens=100, output_tokens=50, cached_input_tokens=40, reasoning_tokens=30)


def test_the_request_body() -> None:
    body = gemini_body("gemini", {"messages": [
        *PROMPT, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'}],
        "tools": TOOLS, "tool_choice": "required", "max_tokens": 50, "stop": "END", "temperature": 0.2})
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"] == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
    assert body["contents"][2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 50, "stopSequences": ["END"]}


def test_urls_and_auth() -> None:
    ask = ChatRequest.of({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    studio = Deployment("g", "m", "gemini", "gemini-2.5-flash", credentials=ApiKey(Secret("k1")))
    req = ADAPTERS["gemini"].chat_request(studio, ask)
    assert req.url == ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:"
                       "streamGenerateContent?alt=sse")
    assert req.headers["x-goog-api-key"] == "k1" and "Authorization" not in req.headers
    vertex = Deployment("v", "m", "vertex_ai", "gemini-2.5-flash",
                        credentials=GoogleServiceAccount(Secret(service_account_json()), "proj", "europe-west4"))
    req = ADAPTERS["vertex_ai"].chat_request(vertex, ChatRequest.of({**ask.body, "stream": False}))
    assert req.url == ("https://europe-west4-aiplatform.googleapis.com/v1/projects/proj/locations/europe-west4/"
                       "publishers/google/models/gemini-2.5-flash:generateContent")
    assert req.headers["Authorization"].startswith("Bearer ey")


@pytest.fixture(scope="module")
def google(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, dict]]:
    fakes = {"gemini": GeminiFake("gemini"), "vertex": GeminiFake("vertex", vertex=True)}
    for fake in fakes.values():
        fake.start()
    workdir = tmp_path_factory.mktemp("google")
    key_file = workdir / "sa.json"
    key_file.write_text(service_account_json())
    vertex = {"model": "vertex_ai/gemini-2.5-flash", "api_base": fakes["vertex"].url,
              "vertex_project": "test-project", "vertex_location": "us-central1"}
    models = [
        model_entry("chat-gemini", {"model": "gemini/gemini-2.5-flash", "api_base": fakes["gemini"].url}),
        model_entry("chat-vertex", {**vertex, "vertex_credentials": "os.environ/TEST_VERTEX_SA"}),
        model_entry("chat-vertex-file", {**vertex, "vertex_credentials": str(key_file)}),
        model_entry("bad-key", {"model": "gemini/gemini-2.5-flash", "api_base": fakes["gemini"].url,
                                "api_key": "wrong"}),
    ]
    env = {"GEMINI_API_KEY": "gemini-key", "GOOGLE_API_KEY": "", "TEST_VERTEX_SA": service_account_json()}
    gw = GatewayProcess(base_config(redis_server.url, models), workdir, env=env)
    gw.start()
    yield gw, fakes
    gw.stop()
    for fake in fakes.values():
        fake.stop()


@pytest.fixture
def client(google: tuple[GatewayProcess, dict]) -> openai.OpenAI:
    for fake in google[1].values():
        fake.reset()
        fake.cached_tokens = 0
        fake.thoughts_tokens = 0
    return openai.OpenAI(base_url=google[0].url + "/v1", api_key="none", max_retries=0, timeout=20)


MODELS = [("chat-gemini", "gemini"), ("chat-vertex", "vertex"), ("chat-vertex-file", "vertex")]


@pytest.mark.parametrize("model,fake", MODELS)
def test_chat_usage_and_price(client: openai.OpenAI, google: tuple[GatewayProcess, dict], model: str,
                              fake: str) -> None:
    upstream = google[1][fake]
    upstream.cached_tokens, upstream.thoughts_tokens = 4, 5
    raw = client.chat.completions.with_raw_response.create(model=model, messages=PROMPT, max_tokens=64)
    reply = raw.parse()
    assert reply.choices[0].message.content == f"Hello from {fake} the answer is 42."
    usage = reply.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (3 + 4 + 4, 7 + 5)  # cached in, thoughts out
    sent = upstream.requests[-1]
    assert sent["json"]["generationConfig"] == {"maxOutputTokens": 64}
    cost = (PRICE_IN * (11 - 4) + PRICE_CACHED * 4 + PRICE_OUT * 12)
    assert Decimal(raw.headers["x-request-cost-usd"]) == cost


@pytest.mark.parametrize("model,fake", MODELS[:2])
def test_stream(client: openai.OpenAI, google: tuple[GatewayProcess, dict], model: str, fake: str) -> None:
    chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Hello from {fake} the answer is 42."
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    assert google[1][fake].requests[-1]["query"] == {"alt": "sse"}


@pytest.mark.parametrize("model,fake", MODELS[:2])
def test_tools_round_trip(client: openai.OpenAI, google: tuple[GatewayProcess, dict], model: str,
                          fake: str) -> None:
    first = client.chat.completions.create(model=model, messages=PROMPT, tools=TOOLS)  # type: ignore[arg-type]
    (call,) = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris",
                                                                                        "unit": "celsius"})
    follow = [*PROMPT, first.choices[0].message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    second = client.chat.completions.create(model=model, messages=follow, tools=TOOLS)  # type: ignore[arg-type]
    assert second.choices[0].message.content == f"Hello from {fake} the answer is 42."
    parts = google[1][fake].requests[-1]["json"]["contents"][-1]["parts"]
    assert parts == [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]


def test_a_parameter_gemini_cannot_honour_is_refused(client: openai.OpenAI,
                                                     google: tuple[GatewayProcess, dict]) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="chat-gemini", messages=PROMPT, logprobs=True)
    assert "logprobs" in str(info.value)
    assert google[1]["gemini"].requests == []


def test_a_wrong_key_is_the_upstream_auth_failure(client: openai.OpenAI, google: tuple[GatewayProcess, dict]) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="bad-key", messages=PROMPT)
    assert info.value.status_code in (401, 502) and "API key not valid" in str(info.value)


def test_the_key_file_path_is_read_at_load(tmp_path: Path) -> None:
    from gateway.config.load import parse

    missing = tmp_path / "nope.json"
    text = ("model_list:\n  - model_name: v\n    litellm_params: {model: vertex_ai/gemini-2.5-flash, "
            f"vertex_project: p, vertex_credentials: {missing}}}\n")
    with pytest.raises(Exception) as info:
        parse(text, "t.yaml", {})
    assert "vertex_credentials" in str(info.value) and "BEGIN PRIVATE" not in str(info.value)
