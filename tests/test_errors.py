"""Bad input and failing providers get the contract's OpenAI-shaped error, never a 500 or a traceback."""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Iterator

import httpx
import openai
import pytest

from tests.conftest import Fakes, GatewayProcess, base_config, free_port, model_entry

PROMPT = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def gateway(fakes: Fakes, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    dead_port = free_port()  # nothing listens here
    models = [
        model_entry("chat", {**fakes.params("openai"), "timeout": 1.5, "stream_timeout": 1.5}, id="openai-chat"),
        model_entry("chat-azure", {**fakes.params("azure"), "timeout": 1.5}, id="azure-chat"),
        model_entry("chat-bedrock", {**fakes.params("bedrock"), "timeout": 1.5, "stream_timeout": 1.5},
                    id="bedrock-chat"),
        model_entry("chat-ollama", {**fakes.params("ollama"), "timeout": 1.5, "stream_timeout": 1.5},
                    id="ollama-chat"),
        model_entry("down", {"model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{dead_port}/v1",
                             "api_key": "sk-x"}, id="nothing-listens"),
        # the 429 tests open a circuit breaker; their deployments are their own
        *[model_entry(f"rl-{k}", fakes.params(k), id=f"rl-{k}") for k in ("openai", "azure", "bedrock", "ollama")],
        model_entry("wrong-key", {**fakes.params("openai"), "api_key": "sk-wrong"}, id="openai-wrong-key"),
        model_entry("bad-sig", {**fakes.params("bedrock"), "aws_secret_access_key": "not-the-secret"},
                    id="bedrock-bad-sig"),
    ]
    cfg = base_config(redis_server.url, models,
                      auth={"keys": [{"key": "tg-key-tenant-a", "tenant": "a"}]},
                      server={"max_body_bytes": 4096},
                      # these tests fail deployments on purpose, one after another; breakers are tested elsewhere
                      routing={"breaker": {"failures": 1000}, "retries": {"max": 0}})
    gw = GatewayProcess(cfg, tmp_path_factory.mktemp("errors"))
    gw.start()
    yield gw
    gw.stop()
    assert "Traceback" not in gw.log(), "the gateway logged an unhandled exception"


@pytest.fixture
def client(gateway: GatewayProcess, fakes: Fakes) -> openai.OpenAI:
    fakes.reset()
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="tg-key-tenant-a", max_retries=0, timeout=15)


def post(gateway: GatewayProcess, body: bytes | str, key: str | None = "tg-key-tenant-a",
         path: str = "/v1/chat/completions") -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return httpx.post(gateway.url + path, content=body, headers=headers, timeout=15)


def assert_openai_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in resp.text
    if code is not None:
        assert err["code"] == code, err
    return err


@pytest.mark.parametrize(
    "body,status,code",
    [
        ("{not json", 400, "invalid_json"),
        ("", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_json"),
        ('{"messages": []}', 400, "missing_model"),
        ('{"model": 42, "messages": []}', 400, "missing_model"),
        ('{"model": "no-such-model", "messages": []}', 404, "model_not_found"),
        (json.dumps({"model": "chat", "messages": PROMPT, "pad": "x" * 5000}), 413, "request_too_large"),
    ],
)
def test_bad_requests(gateway: GatewayProcess, body: str, status: int, code: str) -> None:
    assert_openai_error(post(gateway, body), status, code)


def test_oversized_body_without_content_length(gateway: GatewayProcess) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "chat", "pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    resp = httpx.post(gateway.url + "/v1/chat/completions", content=chunks(),
                      headers={"authorization": "Bearer tg-key-tenant-a"}, timeout=15)
    assert_openai_error(resp, 413, "request_too_large")


@pytest.mark.parametrize("key", [None, "wrong-key-123", ""])
def test_bad_or_missing_key(gateway: GatewayProcess, key: str | None) -> None:
    err = assert_openai_error(post(gateway, json.dumps({"model": "chat", "messages": PROMPT}), key=key), 401)
    assert err["type"] == "authentication_error"


def test_bad_key_through_sdk(gateway: GatewayProcess) -> None:
    bad = openai.OpenAI(base_url=gateway.url + "/v1", api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="chat", messages=PROMPT)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_invalid_task_id(gateway: GatewayProcess) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "chat", "messages": PROMPT},
                      headers={"authorization": "Bearer tg-key-tenant-a", "x-task-id": "bad id with spaces"})
    assert_openai_error(resp, 400, "invalid_task_id")


@pytest.mark.parametrize("model,fake", [("rl-openai", "openai"), ("rl-azure", "azure"),
                                        ("rl-bedrock", "bedrock"), ("rl-ollama", "ollama")])
def test_upstream_429_passes_through_with_retry_after(client: openai.OpenAI, fakes: Fakes, model: str,
                                                      fake: str) -> None:
    fakes.all[fake].fail("429", retry_after=7)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=model, messages=PROMPT)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.response.headers["x-task-id"]


@pytest.mark.parametrize("model,fake", [("chat", "openai"), ("chat-azure", "azure"),
                                        ("chat-bedrock", "bedrock"), ("chat-ollama", "ollama")])
@pytest.mark.parametrize("behaviour", ["500", "503"])
def test_upstream_5xx_becomes_502(client: openai.OpenAI, fakes: Fakes, model: str, fake: str,
                                  behaviour: str) -> None:
    fakes.all[fake].fail(behaviour)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=model, messages=PROMPT)
    assert info.value.status_code == 502
    assert "deployment" in info.value.message


@pytest.mark.parametrize("model,fake", [("chat", "openai"), ("chat-bedrock", "bedrock")])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_hang_becomes_504(client: openai.OpenAI, fakes: Fakes, model: str, fake: str,
                                   stream: bool) -> None:
    fakes.all[fake].fail("hang")
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        result = client.chat.completions.create(model=model, messages=PROMPT, stream=stream)
        if stream:
            list(result)
    assert info.value.status_code == 504
    assert time.monotonic() - started < 6, "the configured timeout (1.5 s) must bound the wait"


def test_unreachable_deployment_is_a_clear_502(client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="down", messages=PROMPT)
    assert info.value.status_code == 502
    assert "nothing-listens" in info.value.message and "cannot connect" in info.value.message
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("model", ["wrong-key", "bad-sig"])
def test_upstream_rejects_our_credentials(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=model, messages=PROMPT)
    assert info.value.status_code == 502
    assert "sk-wrong" not in info.value.message and "not-the-secret" not in info.value.message


@pytest.mark.parametrize("model,fake", [("chat", "openai"), ("chat-bedrock", "bedrock"), ("chat-ollama", "ollama")])
@pytest.mark.parametrize("behaviour", ["drop", "midstream_error"])
def test_mid_stream_failure_is_an_in_band_error(client: openai.OpenAI, fakes: Fakes, model: str, fake: str,
                                                behaviour: str) -> None:
    fakes.all[fake].fail(behaviour)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model=model, messages=PROMPT, stream=True):
            received.append(chunk)
    assert received, "the content streamed before the failure reached the client"


def test_azure_content_filter_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="chat-azure", messages=[{"role": "user", "content": "FORBIDDEN words"}])
    assert info.value.code == "content_filter"


def test_unknown_route_is_openai_shaped(gateway: GatewayProcess) -> None:
    resp = httpx.get(gateway.url + "/v1/nothing-here")
    assert_openai_error(resp, 404)


def test_client_disconnect_cancels_the_upstream_stream(gateway: GatewayProcess, fakes: Fakes) -> None:
    fakes.reset()
    fakes.openai.chunk_delay = 0.3  # seconds between streamed words
    try:
        body = json.dumps({"model": "chat", "messages": PROMPT, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", gateway.port)) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      b"authorization: Bearer tg-key-tenant-a\r\ncontent-length: " + str(len(body)).encode()
                      + b"\r\n\r\n" + body)
            assert b"200 OK" in s.recv(4096)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not fakes.openai.disconnects:
            time.sleep(0.05)
        assert fakes.openai.disconnects == 1, "the gateway must close the upstream stream"
    finally:
        fakes.openai.chunk_delay = 0.0
