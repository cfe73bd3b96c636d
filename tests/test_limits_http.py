"""Rate limits through the real app in-process (tests/inproc.py): 429 with retry-after and OpenAI's
x-ratelimit-* headers in each front's error shape, the same headers on admitted responses, TPM
settled with the actual tokens on every path, no store call when no limit applies, and the store
being down (store.on_unavailable)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
import pytest

from tests.conftest import RedisServer
from tests.inproc import Harness, Response
from tests.scripted import Step

_dbs = itertools.count(640)

CONFIG = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-a, api_base: "http://a/v1", api_key: key-a, max_retries: 0}
    model_info: {id: a}
store: {url: REDIS_URL, on_unavailable: ON_UNAVAILABLE}
routing:
  retries: {max: 0, backoff_base_s: 0, backoff_max_s: 0}
auth:
  keys:
    - {key: key-rpm-two, tenant: team, rpm: 2}
    - {key: key-tpm-600, tenant: team, tpm: 600}
    - {key: key-unlimited, tenant: free}
    - {key: key-tenant-limited, tenant: small}
limits:
  tenants:
    small: {rpm: 1}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200}
LIMIT_HEADERS = ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"]
TOKEN_HEADERS = ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]


def completion(prompt: int = 10, out: int = 5) -> bytes:
    return orjson.dumps({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}})


def sse(*texts: str) -> list[bytes]:
    def chunk(delta: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "g",
                                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}) + b"\n\n"
    return [chunk({"role": "assistant", "content": ""}), *(chunk({"content": t}) for t in texts)]


OK = Step(200, completion())


def config(on_unavailable: str = "fail_open") -> str:
    return CONFIG.replace("ON_UNAVAILABLE", on_unavailable)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}"


@pytest.fixture
async def gw(redis_url: str) -> Any:
    async with Harness(config(), redis_url) as h:
        yield h


async def chat(gw: Harness, key: str, body: dict[str, Any] | None = None, path: str = "/v1/chat/completions",
               **kw: Any) -> Response:
    return await gw.call(path, body or CHAT, [("Authorization", f"Bearer {key}")], **kw)


async def test_a_key_over_its_rpm_gets_429_with_retry_after_and_every_header(gw: Harness) -> None:
    gw.transport.add(OK, OK)
    first, second = await chat(gw, "key-rpm-two"), await chat(gw, "key-rpm-two")
    assert (first.status, second.status) == (200, 200)
    for resp, left in ((first, "1"), (second, "0")):
        assert resp.headers["x-ratelimit-limit-requests"] == "2"
        assert resp.headers["x-ratelimit-remaining-requests"] == left
        assert resp.headers["x-ratelimit-reset-requests"].endswith("s")
        assert not any(h in resp.headers for h in TOKEN_HEADERS), "no TPM limit: no token headers"
    third = await chat(gw, "key-rpm-two")
    assert third.status == 429
    assert third.json()["error"]["type"] == "rate_limit_error"
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert "requests per minute of key" in third.json()["error"]["message"]
    assert set(third.json()["error"]) == {"message", "type", "param", "code"}
    retry = int(third.headers["retry-after"])
    assert 1 <= retry <= 30  # two per minute: the next one fits in 30 s
    assert third.headers["x-ratelimit-limit-requests"] == "2"
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    assert third.headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-task-id" in third.headers
    assert len(gw.transport.sent) == 2, "a refused request never reaches the upstream"


async def test_messages_front_answers_429_in_anthropic_shape(gw: Harness) -> None:
    gw.transport.add(OK)
    body = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    assert (await chat(gw, "key-tenant-limited", body, "/v1/messages")).status == 200
    refused = await chat(gw, "key-tenant-limited", body, "/v1/messages")
    assert refused.status == 429
    assert refused.json() == {"type": "error", "error": {"type": "rate_limit_error",
                                                         "message": refused.json()["error"]["message"]}}
    assert "tenant 'small'" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert all(h in refused.headers for h in LIMIT_HEADERS)


async def test_tokens_429_names_the_token_headers(gw: Harness) -> None:
    gw.transport.add(OK)
    big = {**CHAT, "max_tokens": 500}  # worst case ~525 of 600 tokens: one fits, the second does not
    assert (await chat(gw, "key-tpm-600", big)).status == 200
    refused = await chat(gw, "key-tpm-600", {**big, "max_tokens": 400})
    assert refused.status == 429, refused.body
    assert all(h in refused.headers for h in TOKEN_HEADERS)
    assert refused.headers["x-ratelimit-limit-tokens"] == "600"
    assert "tokens per minute" in refused.json()["error"]["message"]


def remaining_tokens(resp: Response) -> int:
    return int(resp.headers["x-ratelimit-remaining-tokens"])


def worst(body: dict[str, Any]) -> int:
    return len(orjson.dumps(body["messages"])) // 3 + 16 + body["max_tokens"]


async def settle(gw: Harness) -> None:
    await gw.app.services.ledger.limits.drain()


def refilled(since: float) -> int:
    """Tokens the 600-TPM bucket refills since ``since`` (10 a second), rounded up, plus one."""
    return int((time.monotonic() - since) * 10) + 2


async def test_tpm_is_settled_with_the_actual_tokens(gw: Harness) -> None:
    """The worst case (~225 tokens) is charged at admission; the request used 15: the rest comes back."""
    gw.transport.add(OK, OK)
    t0 = time.monotonic()
    first = await chat(gw, "key-tpm-600")
    assert first.status == 200
    w = worst(CHAT)
    assert 600 - w <= remaining_tokens(first) <= 600 - w + 1
    await settle(gw)
    second = await chat(gw, "key-tpm-600")
    # without settlement: 600 - 2w = ~150; settled: 600 - 15 - w (+ a token per 100 ms refilled)
    assert 600 - 15 - w <= remaining_tokens(second) <= 600 - 15 - w + refilled(t0), (remaining_tokens(second), w)


async def test_a_failed_request_returns_its_whole_reservation(gw: Harness) -> None:
    gw.transport.add(Step(500, b'{"error": {"message": "boom"}}'))
    t0 = time.monotonic()
    assert (await chat(gw, "key-tpm-600")).status == 502
    await settle(gw)
    gw.transport.add(OK)
    again = await chat(gw, "key-tpm-600")
    assert 600 - worst(CHAT) <= remaining_tokens(again) <= 600 - worst(CHAT) + refilled(t0)


async def test_a_cancelled_stream_is_settled_with_its_estimate(gw: Harness) -> None:
    gate, gone = asyncio.Event(), asyncio.Event()
    gw.transport.add(Step(chunks=sse("one", "two"), gate=gate, gate_after=2))
    t0 = time.monotonic()
    call = asyncio.ensure_future(chat(gw, "key-tpm-600", {**CHAT, "stream": True}, disconnect=gone))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if gw.transport.sent:
            break
    await asyncio.sleep(0.05)
    gone.set()
    await call
    await settle(gw)
    estimate = gw.records[-1].usage
    assert gw.records[-1].outcome == "cancelled" and estimate is not None
    used = estimate.input_tokens + estimate.output_tokens
    assert used < 30
    gw.transport.add(OK)
    again = await chat(gw, "key-tpm-600")
    w = worst({**CHAT, "stream": True})
    assert 600 - used - w <= remaining_tokens(again) <= 600 - used - w + refilled(t0), (used, w)


async def test_no_limit_no_store_call(gw: Harness) -> None:
    limiter = gw.app.services.ledger.limits
    calls = []
    real = limiter.check_script

    async def counting(**kw: Any) -> Any:
        calls.append(kw["keys"])
        return await real(**kw)

    limiter.check_script = counting  # type: ignore[assignment]
    gw.transport.add(OK, OK)
    free = await chat(gw, "key-unlimited")
    assert free.status == 200 and not any(h.startswith("x-ratelimit") for h in free.headers)
    assert calls == [], "a caller under no limit costs no store round trip"
    await chat(gw, "key-rpm-two")
    assert len(calls) == 1, "one round trip for every limit of a request"


async def test_explain_is_not_counted(gw: Harness) -> None:
    for _ in range(3):
        assert (await chat(gw, "key-rpm-two", path="/v1/route/explain")).status == 200
    gw.transport.add(OK)
    assert (await chat(gw, "key-rpm-two")).headers["x-ratelimit-remaining-requests"] == "1"


@pytest.mark.parametrize(("mode", "status"), [("fail_open", 200), ("fail_closed", 503)])
async def test_store_down_follows_on_unavailable(mode: str, status: int) -> None:
    server = RedisServer()
    server.start()
    async with Harness(config(mode), server.url) as h:
        server.stop()
        h.transport.add(OK)
        resp = await chat(h, "key-rpm-two")
        assert resp.status == status, resp.body
        if status == 200:
            assert not any(k.startswith("x-ratelimit") for k in resp.headers), "unchecked: no headers"
        else:
            assert resp.json()["error"]["code"] == "store_unavailable"
            assert int(resp.headers["retry-after"]) >= 1
