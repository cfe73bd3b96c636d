"""The fake upstreams are strict: they reject what the real services reject, speak the real
wire formats, count what the provider bills, and misbehave on demand."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import struct
import threading
import time
import zlib

import botocore.auth
import botocore.session
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

try:
    from tests.fakes import (
        AzureFake,
        BedrockFake,
        FakeServer,
        OllamaFake,
        OpenAIFake,
        eventstream,
    )
except ImportError:  # tests/ itself on sys.path (pytest rootdir-less "prepend" import)
    from fakes import (
        AzureFake,
        BedrockFake,
        FakeServer,
        OllamaFake,
        OpenAIFake,
        eventstream,
    )

MODEL_ID = "anthropic.claude-3-5-sonnet-20241022-v2:0"
BEDROCK_PATH = "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0"
OA_KEY = {"authorization": "Bearer sk-fake"}
AZ_KEY = {"api-key": "azure-key"}
AZ_CHAT = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
USER_HI = [{"role": "user", "content": "hi there friend"}]  # 3 input tokens
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
BR_TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}


def reply(name: str) -> str:
    return f"Hello from {name} the answer is 42."


# -- fixtures: one started fake per provider, reset before each test -------------------------
@pytest.fixture(scope="module")
def servers():
    running = {"openai": OpenAIFake(), "azure": AzureFake(), "bedrock": BedrockFake(), "ollama": OllamaFake(),
               "vllm": OpenAIFake(name="vllm", api_key=None, flavor="vllm"),
               "llamacpp": OpenAIFake(name="llamacpp", api_key=None, flavor="llamacpp")}
    for fake in running.values():
        fake.start()
    yield running
    for fake in running.values():
        fake.stop()


@pytest.fixture
def up(servers):
    for fake in servers.values():
        fake.reset()
        fake.cached_tokens = 0
    return servers


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=5) as client:
        yield client


# -- wire helpers -----------------------------------------------------------------------------
def sse_events(text: str) -> list:
    out = []
    for block in text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def sign(fake: BedrockFake, path: str, body: bytes, *, secret="fake-secret", region="us-east-1",
         service="bedrock", access="AKIDFAKE", token=None) -> dict:
    request = AWSRequest("POST", fake.url + path, data=body, headers={"content-type": "application/json"})
    SigV4Auth(Credentials(access, secret, token), service, region).add_auth(request)
    return dict(request.headers.items())


def bedrock_post(http, fake, op: str, body: dict, timeout: float = 5, **sign_kw) -> httpx.Response:
    raw = json.dumps(body).encode()
    path = f"{BEDROCK_PATH}/{op}"
    return http.post(fake.url + path, content=raw, headers=sign(fake, path, raw, **sign_kw), timeout=timeout)


def frames(data: bytes) -> list:
    buf = EventStreamBuffer()
    buf.add_data(data)
    return list(buf)


def frame_event(msg) -> tuple[str, dict]:
    kind = msg.headers[":message-type"]
    name = msg.headers[":event-type" if kind == "event" else ":exception-type"]
    return name, json.loads(msg.payload)


# A request per provider: (method, path, json, headers), stream or not, text or tools.
def chat_request(provider: str, stream: bool, tools: bool = False, include_usage: bool = False) -> tuple:
    if provider == "bedrock":
        body = {"messages": [{"role": "user", "content": [{"text": "hi there friend"}]}]}
        if tools:
            body["toolConfig"] = BR_TOOLS
        return "bedrock", "converse-stream" if stream else "converse", body
    body = {"model": "llama3.2" if provider == "ollama" else "gpt-4o-mini", "messages": USER_HI, "stream": stream}
    if tools:
        body["tools"] = TOOLS
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    if provider == "ollama":
        return "POST", "/api/chat", body, {}
    if provider == "azure":
        return "POST", AZ_CHAT, body, AZ_KEY
    return "POST", "/v1/chat/completions", body, OA_KEY


def send(http, fake, req, **kw) -> httpx.Response:
    if req[0] == "bedrock":
        return bedrock_post(http, fake, req[1], req[2], **kw)
    method, path, body, headers = req
    return http.request(method, fake.url + path, json=body, headers=headers, **kw)


def stream_texts(provider: str, resp_bytes: bytes) -> list[str]:
    """Text pieces of a (possibly partial) streamed reply, per provider wire format."""
    if provider == "bedrock":
        return [p["delta"]["text"] for name, p in map(frame_event, frames(resp_bytes))
                if name == "contentBlockDelta"]
    if provider == "ollama":
        lines = [json.loads(line) for line in resp_bytes.decode().splitlines() if line]
        return [line["message"]["content"] for line in lines if "message" in line and line["message"]["content"]]
    return [c["choices"][0]["delta"]["content"] for c in sse_events(resp_bytes.decode())
            if isinstance(c, dict) and c.get("choices") and c["choices"][0]["delta"].get("content")]


# -- FakeServer -------------------------------------------------------------------------------
def test_fake_server_runs_any_asgi_app(http):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with FakeServer(app) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert http.get(server.url).text == "ok"


def test_stop_does_not_hang_on_a_hanging_request():
    fake = OpenAIFake().start()
    fake.fail("hang")
    errors = []

    def call():
        try:
            httpx.post(fake.url + "/v1/chat/completions", headers=OA_KEY, timeout=30,
                       json={"model": "m", "messages": USER_HI})
        except httpx.HTTPError as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.2)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 3
    t.join(timeout=5)
    assert errors and isinstance(errors[0], httpx.RemoteProtocolError)


# -- OpenAI -----------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer sk-wrong"}, {"authorization": "sk-fake"}])
def test_openai_requires_bearer_key(up, http, headers):
    r = http.post(up["openai"].url + "/v1/chat/completions", headers=headers,
                  json={"model": "gpt-4o-mini", "messages": USER_HI})
    assert r.status_code == 401
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == "invalid_api_key"
    assert up["openai"].billed.requests == 0


@pytest.mark.parametrize("body,status,param", [
    ({"metadata": {"task": "t1"}}, 400, "metadata"),
    ({"metadata": {"task": "t1"}, "store": False}, 400, "metadata"),
    ({"metadata": {"task": "t1"}, "store": True}, 200, None),
    ({"task_id": "t1"}, 400, None),
    ({"stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"messages": []}, 400, "messages"),
    ({"messages": None}, 400, "messages"),
    ({"model": "unknown-model"}, 404, None),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c1", "content": "r"}]},
     400, "messages.[1].role"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, 400, "messages.[2].role"),
    ({"tool_choice": "auto"}, 400, "tool_choice"),
])
def test_openai_rejects_what_openai_rejects(up, http, body, status, param):
    r = http.post(up["openai"].url + "/v1/chat/completions", headers=OA_KEY,
                  json={"model": "gpt-4o-mini", "messages": USER_HI, **body})
    assert r.status_code == status, r.text
    if status != 200:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["param"] == param
        if status == 404:
            assert err["code"] == "model_not_found"


def test_openai_rejects_invalid_json_and_unknown_urls(up, http):
    url = up["openai"].url
    r = http.post(url + "/v1/chat/completions", headers={**OA_KEY, "content-type": "application/json"},
                  content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert http.post(url + "/v1/chat/complete", headers=OA_KEY, json={}).status_code == 404


def test_openai_non_stream_response_shape_and_billing(up, http):
    fake = up["openai"]
    r = http.post(fake.url + "/v1/chat/completions", headers=OA_KEY,
                  json={"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "be brief"}, *USER_HI]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int) and body["model"] == "gpt-4o-mini"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert choice["message"]["content"].split(" ") == ["Hello", "from", "openai", "the", "answer", "is", "42."]
    assert body["usage"] == {**body["usage"], "prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert fake.billed.as_dict() == {"requests": 1, "input_tokens": 5, "output_tokens": 7, "cached_input_tokens": 0}
    rec = fake.requests[-1]
    assert rec["path"] == "/v1/chat/completions" and rec["headers"]["authorization"] == "Bearer sk-fake"
    assert rec["json"]["model"] == "gpt-4o-mini" and rec["query"] == {}


@pytest.mark.parametrize("include_usage", [False, True])
def test_openai_stream_include_usage_semantics(up, http, include_usage):
    fake = up["openai"]
    r = send(http, fake, chat_request("openai", stream=True, include_usage=include_usage))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(stream_texts("openai", r.content)) == reply("openai")
    if include_usage:
        *body, last = chunks
        assert all("usage" in c and c["usage"] is None for c in body)
        assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 3
        assert last["usage"]["completion_tokens"] == 7 and last["usage"]["total_tokens"] == 10
        assert body[-1]["choices"][0]["finish_reason"] == "stop"
    else:
        assert all("usage" not in c for c in chunks) and all(c["choices"] for c in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert fake.billed.output_tokens == 7 and fake.billed.input_tokens == 3


def test_openai_tool_calls_whole_and_streamed(up, http):
    fake = up["openai"]
    body = send(http, fake, chat_request("openai", stream=False, tools=True)).json()
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert body["choices"][0]["finish_reason"] == "tool_calls" and body["usage"]["completion_tokens"] == 9
    assert call["id"] == "call_fake_1" and call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"] == '{"city": "Paris", "unit": "celsius"}'

    chunks = [c for c in sse_events(send(http, fake, chat_request("openai", stream=True, tools=True)).text)
              if c != "[DONE]"]
    fragments = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
                 if c["choices"][0]["delta"].get("tool_calls")]
    head, *pieces = fragments
    assert head["id"] == "call_fake_1" and head["type"] == "function" and head["function"]["arguments"] == ""
    assert head["function"]["name"] == "get_weather" and len(pieces) == 3
    assert all(set(p) == {"index", "function"} and set(p["function"]) == {"arguments"} for p in pieces)
    assert json.loads("".join(p["function"]["arguments"] for p in pieces)) == {"city": "Paris", "unit": "celsius"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    after_tool = {"model": "m", "tools": TOOLS, "messages": [*USER_HI, {"role": "assistant", "content": None,
                  "tool_calls": [{"id": "call_fake_1", "type": "function", "function": {"name": "get_weather",
                                  "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "call_fake_1",
                                                          "content": "sunny and warm"}]}
    r = http.post(fake.url + "/v1/chat/completions", headers=OA_KEY, json=after_tool)
    assert r.json()["choices"][0]["message"]["content"] == reply("openai")
    assert r.json()["usage"]["prompt_tokens"] == 6
    none = http.post(fake.url + "/v1/chat/completions", headers=OA_KEY,
                     json={"model": "m", "messages": USER_HI, "tools": TOOLS, "tool_choice": "none"})
    assert none.json()["choices"][0]["finish_reason"] == "stop"


def test_openai_cached_tokens_are_part_of_prompt_tokens(up, http):
    fake = up["openai"]
    fake.cached_tokens = 2
    usage = send(http, fake, chat_request("openai", stream=False)).json()["usage"]
    assert usage["prompt_tokens"] == 3 and usage["prompt_tokens_details"]["cached_tokens"] == 2
    assert fake.billed.input_tokens == 3 and fake.billed.cached_input_tokens == 2


def test_openai_embeddings_float_base64_and_sdk(up, http):
    import openai

    fake = up["openai"]
    url = fake.url + "/v1/embeddings"
    floats = http.post(url, headers=OA_KEY, json={"model": "text-embedding-3-small", "input": ["a b", "c"]}).json()
    assert floats["object"] == "list" and floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert [d["index"] for d in floats["data"]] == [0, 1] and floats["data"][0]["object"] == "embedding"
    assert all(len(d["embedding"]) == 8 for d in floats["data"])
    b64 = http.post(url, headers=OA_KEY, json={"model": "text-embedding-3-small", "input": ["a b", "c"],
                                               "encoding_format": "base64"}).json()
    decoded = list(struct.unpack("<8f", base64.b64decode(b64["data"][0]["embedding"])))
    assert decoded == floats["data"][0]["embedding"]
    dims = http.post(url, headers=OA_KEY, json={"model": "e", "input": "x", "dimensions": 3}).json()
    assert len(dims["data"][0]["embedding"]) == 3
    assert http.post(url, headers=OA_KEY, json={"model": "e", "input": "x", "foo": 1}).status_code == 400

    client = openai.OpenAI(api_key="sk-fake", base_url=fake.url + "/v1", max_retries=0)
    sdk = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert fake.requests[-1]["json"]["encoding_format"] == "base64"
    assert sdk.data[1].embedding == floats["data"][1]["embedding"]
    models = http.get(fake.url + "/v1/models", headers=OA_KEY).json()
    assert models["object"] == "list" and {"id", "object", "created", "owned_by"} <= set(models["data"][0])


def test_vllm_and_llamacpp_flavors(up, http):
    loose = {"model": "m", "messages": USER_HI, "metadata": {"a": "b"}, "top_k": 5}
    for name in ("vllm", "llamacpp"):
        r = http.post(up[name].url + "/v1/chat/completions", json=loose)  # no key, extra params: fine
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == reply(name)
    keyed = OpenAIFake(name="v", api_key="secret", flavor="vllm")
    with keyed:
        assert http.post(keyed.url + "/v1/chat/completions", json=loose).status_code == 401
        assert http.post(keyed.url + "/v1/chat/completions", json=loose,
                         headers={"authorization": "Bearer secret"}).status_code == 200
    # llama.cpp: final choices:[] chunk with usage and timings even without include_usage
    chunks = [c for c in sse_events(http.post(up["llamacpp"].url + "/v1/chat/completions",
                                              json={"model": "m", "messages": USER_HI, "stream": True}).text)
              if c != "[DONE]"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 7
    assert chunks[-1]["timings"]["predicted_n"] == 7
    assert all("usage" not in c for c in chunks[:-1])


# -- Azure ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path,headers,status,code", [
    (AZ_CHAT, {}, 401, "401"),
    (AZ_CHAT, {"api-key": "wrong"}, 401, "401"),
    (AZ_CHAT, {"authorization": "Bearer azure-key"}, 401, "401"),
    ("/openai/deployments/gpt-4o-mini/chat/completions", AZ_KEY, 404, "404"),
    ("/openai/deployments/nope/chat/completions?api-version=2024-10-21", AZ_KEY, 404, "DeploymentNotFound"),
    ("/openai/deployment/gpt-4o-mini/chat/completions?api-version=2024-10-21", AZ_KEY, 404, "404"),
])
def test_azure_auth_version_and_deployment(up, http, path, headers, status, code):
    r = http.post(up["azure"].url + path, headers=headers, json={"messages": USER_HI})
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and "type" not in err and "param" not in err
    if code == "404":
        assert err["message"] == "Resource not found"


def test_azure_api_versions_restriction(http):
    with AzureFake(api_versions=("2024-10-21",)) as fake:
        ok = http.post(fake.url + AZ_CHAT, headers=AZ_KEY, json={"messages": USER_HI})
        bad = http.post(fake.url + AZ_CHAT.replace("2024-10-21", "2023-01-01"), headers=AZ_KEY,
                        json={"messages": USER_HI})
        assert ok.status_code == 200 and bad.status_code == 400


def test_azure_content_filter(up, http):
    r = http.post(up["azure"].url + AZ_CHAT, headers=AZ_KEY,
                  json={"messages": [{"role": "user", "content": "say something FORBIDDEN please"}]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "content_filter" and err["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert up["azure"].billed.requests == 0


def test_azure_stream_starts_with_prompt_filter_chunk(up, http):
    r = send(http, up["azure"], chat_request("azure", stream=True, include_usage=True))
    chunks = [c for c in sse_events(r.text) if c != "[DONE]"]
    first = chunks[0]
    assert first["choices"] == [] and first["id"] == "" and first["model"] == "" and "usage" not in first
    assert first["prompt_filter_results"][0]["prompt_index"] == 0
    content = [c for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert content and all(c["choices"][0]["content_filter_results"]["hate"]["filtered"] is False for c in content)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 7
    assert "".join(stream_texts("azure", r.content)) == reply("azure")


def test_azure_with_openai_sdk(up):
    import openai

    fake = up["azure"]
    client = openai.AzureOpenAI(api_key="azure-key", api_version="2024-10-21", azure_endpoint=fake.url,
                                max_retries=0)
    out = client.chat.completions.create(model="gpt-4o-mini", messages=USER_HI)
    assert out.choices[0].message.content == reply("azure")
    assert fake.requests[-1]["query"] == {"api-version": "2024-10-21"}
    fake.fail("429", retry_after=3)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER_HI)
    assert info.value.response.headers["retry-after"] == "3"
    assert info.value.response.headers["retry-after-ms"] == "3000"
    assert info.value.response.json()["error"]["code"] == "429"


# -- Bedrock ----------------------------------------------------------------------------------
def test_bedrock_accepts_botocore_client_with_colon_in_model_id(up):
    fake = up["bedrock"]
    client = botocore.session.get_session().create_client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=fake.url, aws_access_key_id="AKIDFAKE",
        aws_secret_access_key="fake-secret", config=Config(retries={"max_attempts": 0}))
    out = client.converse(modelId=MODEL_ID, system=[{"text": "be brief"}],
                          messages=[{"role": "user", "content": [{"text": "hi there friend"}]}],
                          inferenceConfig={"maxTokens": 10, "temperature": 0.5})
    assert fake.requests[-1]["raw_path"] == BEDROCK_PATH + "/converse"
    assert out["output"]["message"] == {"role": "assistant", "content": [{"text": reply("bedrock")}]}
    assert out["stopReason"] == "end_turn" and out["metrics"]["latencyMs"] >= 0
    assert out["usage"] == {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}
    events = list(client.converse_stream(modelId=MODEL_ID, messages=[
        {"role": "user", "content": [{"text": "hi"}]}])["stream"])
    assert list(events[0]) == ["messageStart"] and list(events[-1]) == ["metadata"]
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == \
        reply("bedrock")


@pytest.fixture
def frozen_clock(monkeypatch):
    def freeze(when: datetime.datetime):
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: when.replace(tzinfo=None))
    return freeze


@pytest.mark.parametrize("tamper,error_type", [
    ("none", None),
    ("signature", "InvalidSignatureException"),
    ("body", "InvalidSignatureException"),
    ("path", "InvalidSignatureException"),
    ("missing", "MissingAuthenticationTokenException"),
    ("secret", "InvalidSignatureException"),
    ("access_key", "UnrecognizedClientException"),
    ("region", "InvalidSignatureException"),
    ("service", "InvalidSignatureException"),
    ("stale", "InvalidSignatureException"),
])
def test_bedrock_sigv4_is_verified(up, http, frozen_clock, tamper, error_type):
    fake = up["bedrock"]
    path = BEDROCK_PATH + "/converse"
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hello"}]}]}).encode()
    kw = {"secret": {"secret": "nope"}, "access_key": {"access": "AKIDOTHER"}, "region": {"region": "eu-west-1"},
          "service": {"service": "s3"}}.get(tamper, {})
    if tamper == "stale":
        frozen_clock(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20))
    headers = sign(fake, path, body, **kw)
    send_path, send_body = path, body
    if tamper == "signature":
        sig = headers["Authorization"][-1]
        headers["Authorization"] = headers["Authorization"][:-1] + ("0" if sig != "0" else "1")
    elif tamper == "body":
        send_body = body.replace(b"hello", b"HELLO")
    elif tamper == "path":
        send_path = path.replace("%3A", ":")  # signed the quoted path, sends the unquoted one
    elif tamper == "missing":
        headers.pop("Authorization")
    r = http.post(fake.url + send_path, content=send_body, headers=headers)
    if error_type is None:
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 403, r.text
    assert r.headers["x-amzn-errortype"] == error_type and set(r.json()) == {"message"}
    assert fake.billed.requests == 0


def test_bedrock_session_token_required_when_configured(http):
    with BedrockFake(session_token="tok") as fake:
        body = {"messages": [{"role": "user", "content": [{"text": "hello"}]}]}
        assert bedrock_post(http, fake, "converse", body, token="tok").status_code == 200
        r = bedrock_post(http, fake, "converse", body)
        assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "UnrecognizedClientException"


@pytest.mark.parametrize("body,status,error_type", [
    ({}, 400, "ValidationException"),
    ({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, 400, "ValidationException"),
    ({"messages": [{"role": "user", "content": [{"text": "  "}]}]}, 400, "ValidationException"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"temperature": 1.5}},
     400, "ValidationException"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}], "model": "m"}, 400, "ValidationException"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]},
                   {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}]},
                   {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "r"}]}}]}]},
     400, "ValidationException"),  # toolResult without toolConfig
])
def test_bedrock_validation(up, http, body, status, error_type):
    r = bedrock_post(http, up["bedrock"], "converse", body)
    assert r.status_code == status and r.headers["x-amzn-errortype"] == error_type and "message" in r.json()


def test_bedrock_unknown_model_is_404(up, http):
    fake = up["bedrock"]
    raw = json.dumps({"messages": [{"role": "user", "content": [{"text": "x"}]}]}).encode()
    path = "/model/unknown.model-v1%3A0/converse"
    r = http.post(fake.url + path, content=raw, headers=sign(fake, path, raw))
    assert r.status_code == 404 and r.headers["x-amzn-errortype"] == "ResourceNotFoundException"


def test_bedrock_stream_frames_text_and_tools(up, http):
    fake = up["bedrock"]
    fake.cached_tokens = 1
    r = send(http, fake, chat_request("bedrock", stream=True))
    assert r.headers["content-type"] == "application/vnd.amazon.eventstream"
    msgs = frames(r.content)  # EventStreamBuffer verifies both CRCs of every frame
    assert all(m.headers[":message-type"] == "event" and m.headers[":content-type"] == "application/json"
               for m in msgs)
    events = [frame_event(m) for m in msgs]
    names = [n for n, _ in events]
    assert names == ["messageStart"] + ["contentBlockDelta"] * 7 + ["contentBlockStop", "messageStop", "metadata"]
    assert all("p" in payload for _, payload in events)  # Bedrock pads every payload
    assert events[0][1]["role"] == "assistant" and events[-2][1]["stopReason"] == "end_turn"
    assert events[-1][1]["usage"] == {"inputTokens": 2, "outputTokens": 7, "totalTokens": 10,
                                      "cacheReadInputTokens": 1, "cacheWriteInputTokens": 0}
    assert fake.billed.input_tokens == 3 and fake.billed.cached_input_tokens == 1

    tool_events = [frame_event(m) for m in frames(send(http, fake, chat_request("bedrock", True, tools=True)).content)]
    names = [n for n, _ in tool_events]
    assert names == ["messageStart", "contentBlockStart"] + ["contentBlockDelta"] * 3 + [
        "contentBlockStop", "messageStop", "metadata"]
    assert tool_events[1][1]["start"] == {"toolUse": {"toolUseId": "tooluse_fake_1", "name": "get_weather"}}
    pieces = "".join(p["delta"]["toolUse"]["input"] for n, p in tool_events if n == "contentBlockDelta")
    assert json.loads(pieces) == {"city": "Paris", "unit": "celsius"}
    assert tool_events[-2][1]["stopReason"] == "tool_use" and tool_events[-1][1]["usage"]["outputTokens"] == 9


def test_eventstream_encoder_layout_and_crcs():
    frame = eventstream.event_frame("messageStop", {"stopReason": "end_turn"})
    total, headers_len = struct.unpack(">II", frame[:8])
    assert total == len(frame)
    assert struct.unpack(">I", frame[8:12])[0] == zlib.crc32(frame[:8])
    assert struct.unpack(">I", frame[-4:])[0] == zlib.crc32(frame[:-4])
    assert frame[12] == len(":event-type") and frame[13:24] == b":event-type" and frame[24] == 7
    assert json.loads(frame[12 + headers_len:-4]) == {"stopReason": "end_turn"}
    (msg,) = frames(frame)
    assert msg.headers == {":event-type": "messageStop", ":content-type": "application/json",
                           ":message-type": "event"}
    corrupted = frame[:-5] + bytes([frame[-5] ^ 1]) + frame[-4:]
    with pytest.raises(ChecksumMismatch):
        frames(corrupted)


def test_bedrock_titan_embeddings_via_invoke(up, http):
    fake = up["bedrock"]
    path = "/model/amazon.titan-embed-text-v2%3A0/invoke"
    for body, dims in (({"inputText": "a b c"}, 8), ({"inputText": "a b c", "dimensions": 4}, 4)):
        raw = json.dumps(body).encode()
        out = http.post(fake.url + path, content=raw, headers=sign(fake, path, raw)).json()
        assert len(out["embedding"]) == dims and out["inputTextTokenCount"] == 3
    raw = json.dumps({"texts": ["a"]}).encode()
    assert http.post(fake.url + path, content=raw, headers=sign(fake, path, raw)).status_code == 400


# -- Ollama -----------------------------------------------------------------------------------
def test_ollama_streams_ndjson_by_default(up, http):
    fake = up["ollama"]
    r = http.post(fake.url + "/api/chat", json={"model": "llama3.2", "messages": USER_HI})
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert all(line["done"] is False for line in lines[:-1]) and lines[-1]["done"] is True
    assert "".join(line["message"]["content"] for line in lines) == reply("ollama")
    done = lines[-1]
    assert done["done_reason"] == "stop" and done["prompt_eval_count"] == 3 and done["eval_count"] == 7
    assert all(isinstance(done[k], int) for k in ("total_duration", "load_duration", "prompt_eval_duration",
                                                  "eval_duration"))
    one = http.post(fake.url + "/api/chat", json={"model": "llama3.2:latest", "messages": USER_HI,
                                                  "stream": False}).json()
    assert one["message"]["content"] == reply("ollama") and one["done"] is True


def test_ollama_tools_unknown_model_embed_and_tags(up, http):
    fake = up["ollama"]
    out = http.post(fake.url + "/api/chat", json={"model": "llama3.2", "messages": USER_HI, "tools": TOOLS,
                                                  "stream": False}).json()
    assert out["message"]["tool_calls"] == [{"function": {"name": "get_weather",
                                                           "arguments": {"city": "Paris", "unit": "celsius"}}}]
    r = http.post(fake.url + "/api/chat", json={"model": "mistral", "messages": USER_HI})
    assert r.status_code == 404 and r.json() == {"error": 'model "mistral" not found, try pulling it first'}
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert http.post(fake.url + "/api/chat", json={"model": "llama3.2", "messages": parts}).status_code == 400
    emb = http.post(fake.url + "/api/embed", json={"model": "llama3.2", "input": ["a b", "c"]}).json()
    assert len(emb["embeddings"]) == 2 and len(emb["embeddings"][0]) == 8 and emb["prompt_eval_count"] == 3
    tags = http.get(fake.url + "/api/tags").json()
    assert tags["models"][0]["name"] == "llama3.2:latest"


# -- behaviours, for every provider ---------------------------------------------------------------
PROVIDERS = ["openai", "azure", "bedrock", "ollama"]
ERROR_TYPE = {"429": "ThrottlingException", "500": "InternalServerException", "503": "ServiceUnavailableException"}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", ["429", "500", "503"])
def test_fail_status_behaviours_then_recover(up, http, provider, status):
    fake = up[provider]
    fake.fail(status, times=2, retry_after=2)
    req = chat_request(provider, stream=False)
    for _ in range(2):
        r = send(http, fake, req)
        assert r.status_code == int(status)
        if provider == "bedrock":
            assert r.headers["x-amzn-errortype"] == ERROR_TYPE[status] and set(r.json()) == {"message"}
        elif provider == "ollama":
            assert set(r.json()) == {"error"} and isinstance(r.json()["error"], str)
        else:
            err = r.json()["error"]
            if provider == "openai":
                assert set(err) == {"message", "type", "param", "code"}
            else:
                assert err["code"] == status and "type" not in err
        if status == "429" and provider in ("openai", "azure"):
            assert r.headers["retry-after"] == "2"
            if provider == "openai":
                assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert send(http, fake, req).status_code == 200
    assert fake.billed.requests == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hang_then_recover(up, http, provider):
    fake = up[provider]
    fake.fail("hang")
    with pytest.raises(httpx.ReadTimeout):
        send(http, fake, chat_request(provider, stream=False), timeout=0.3)
    assert send(http, fake, chat_request(provider, stream=False)).status_code == 200
    assert fake.billed.requests == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [True, False])
def test_drop(up, http, provider, stream):
    fake = up[provider]
    fake.fail("drop")
    req = chat_request(provider, stream=stream)
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        if req[0] == "bedrock":
            raw = json.dumps(req[2]).encode()
            path = f"{BEDROCK_PATH}/{req[1]}"
            ctx = http.stream("POST", fake.url + path, content=raw, headers=sign(fake, path, raw))
        else:
            ctx = http.stream(req[0], fake.url + req[1], json=req[2], headers=req[3])
        with ctx as r:
            for part in r.iter_raw():
                received += part
    if stream:
        assert stream_texts(provider, bytes(received)) == ["Hello", " from"]
        assert fake.billed.output_tokens == 2
    else:
        assert not received and fake.billed.output_tokens == 0
    assert fake.billed.input_tokens == 3 and fake.billed.requests == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_midstream_error(up, http, provider):
    fake = up[provider]
    fake.fail("midstream_error")
    r = send(http, fake, chat_request(provider, stream=True))
    assert r.status_code == 200
    assert stream_texts(provider, r.content) == ["Hello", " from"]
    if provider == "bedrock":
        last = frames(r.content)[-1]
        assert last.headers[":message-type"] == "exception"
        assert last.headers[":exception-type"] == "modelStreamErrorException"
    elif provider == "ollama":
        assert "error" in json.loads(r.text.splitlines()[-1])
    else:
        assert "error" in sse_events(r.text)[-1] and "[DONE]" not in r.text
    assert fake.billed.output_tokens == 2 and fake.billed.input_tokens == 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_client_disconnect_stops_the_stream_and_is_counted(up, http, provider):
    fake = up[provider]
    fake.chunk_delay = 0.1
    try:
        req = chat_request(provider, stream=True)
        if req[0] == "bedrock":
            raw = json.dumps(req[2]).encode()
            path = f"{BEDROCK_PATH}/{req[1]}"
            ctx = httpx.stream("POST", fake.url + path, content=raw, headers=sign(fake, path, raw))
        else:
            ctx = httpx.stream(req[0], fake.url + req[1], json=req[2], headers=req[3])
        with ctx as r:
            next(r.iter_raw())  # first event, then hang up
        deadline = time.monotonic() + 3
        while not fake.disconnects and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.disconnects == 1
        assert fake.billed.requests == 1 and fake.billed.input_tokens == 3 and fake.billed.output_tokens < 7
    finally:
        fake.chunk_delay = 0.0


def test_reset_and_fail_validation(up, http):
    fake = up["openai"]
    fake.fail("500", times=3)
    send(http, fake, chat_request("openai", stream=False))
    fake.reset()
    assert fake.requests == [] and fake.billed.requests == 0
    assert send(http, fake, chat_request("openai", stream=False)).status_code == 200
    with pytest.raises(ValueError):
        fake.fail("teapot")


def test_sha256_header_must_match_body(up, http):
    fake = up["bedrock"]
    path = BEDROCK_PATH + "/converse"
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hello"}]}]}).encode()
    request = AWSRequest("POST", fake.url + path, data=body,
                         headers={"x-amz-content-sha256": hashlib.sha256(b"other").hexdigest()})
    SigV4Auth(Credentials("AKIDFAKE", "fake-secret"), "bedrock", "us-east-1").add_auth(request)
    r = http.post(fake.url + path, content=body, headers=dict(request.headers.items()))
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "XAmzContentSHA256Mismatch"
