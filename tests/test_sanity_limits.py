"""Sanity limits (issue 10, defects 4, 5 and 6): absurd upstream usage is a protocol error of
its attempt, an upstream's Retry-After is capped, and ``n`` counts in a budget's worst case.

The pure checks are table-tested; the end-to-end cases run real ``taskgate serve`` processes
against the strict OpenAI fake on a real Redis, and print what they measured.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import openai
import orjson
import pytest
import redis

from gateway.accounting.estimate import worst_case_usage
from gateway.errors import BadRequest
from gateway.fronts.chat import ChatCompletionsFront
from policies.health import OPEN, BreakerState, availability, clamp, record_failure
from policies.schema import BreakerSettings
from providers.base import (
    MAX_RETRY_AFTER_S,
    MAX_USAGE_TOKENS,
    NOT_A_COUNT,
    FailureReason,
    Usage,
    parse_retry_after,
    token_count,
    usage_problem,
)
from providers.openai_wire import usage_from_openai
from tests.conftest import Fakes, RedisServer, base_config, model_entry

PROMPT = [{"role": "user", "content": "count these five words"}]


# --- the pure checks ---------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, 0), (0, 0), (12, 12), (12.0, 12), ("12", 12), (-5, -5), (1e16, 10**16),
    (2.5, NOT_A_COUNT), (True, NOT_A_COUNT), ("abc", NOT_A_COUNT), (float("nan"), NOT_A_COUNT),
    (float("inf"), NOT_A_COUNT), ([1], NOT_A_COUNT), ({"a": 1}, NOT_A_COUNT),
])
def test_token_count_keeps_what_it_cannot_read_visible(value: Any, expected: int) -> None:
    assert token_count(value) == expected


@pytest.mark.parametrize("usage, fragment", [
    (Usage(10, 5, 2, 0, 1), None),
    (Usage(0, 0), None),
    (Usage(MAX_USAGE_TOKENS, MAX_USAGE_TOKENS), None),
    (Usage(-1_000_000, 5), "negative input_tokens"),
    (Usage(10, -1), "negative output_tokens"),
    (Usage(10**16, 5), "beyond the bound"),
    (Usage(10, MAX_USAGE_TOKENS + 1), "beyond the bound"),
    (Usage(NOT_A_COUNT, 5), "not a whole number"),
    (Usage(NOT_A_COUNT + 40, 5), "not a whole number"),  # bedrock sums parts: still caught
    (Usage(10, 5, reasoning_tokens=NOT_A_COUNT), "not a whole number"),
    (Usage(10, 2.5), "not a whole number"),  # type: ignore[arg-type]
])
def test_usage_problem(usage: Usage, fragment: str | None) -> None:
    problem = usage_problem(usage)
    assert (problem is None) if fragment is None else (problem is not None and fragment in problem)


def test_openai_usage_parsing_no_longer_truncates() -> None:
    usage = usage_from_openai({"prompt_tokens": 2.5, "completion_tokens": 3})
    assert usage is not None and usage_problem(usage) is not None


@pytest.mark.parametrize("headers, expected", [
    ({"retry-after": "7"}, 7.0),
    ({"retry-after-ms": "1500"}, 1.5),
    ({"retry-after": "1e12"}, MAX_RETRY_AFTER_S),
    ({"retry-after": "inf"}, None),
    ({"retry-after": "nan"}, None),
    ({"retry-after": "-3"}, None),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
])
def test_parse_retry_after_is_bounded(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_a_429_opens_the_breaker_for_at_most_the_cap() -> None:
    cfg = BreakerSettings(max_retry_after_s=120)
    now = 1_000_000.0
    state = record_failure(BreakerState(), now, cfg, FailureReason.RATE_LIMITED, retry_after=1e12)
    assert state.phase == OPEN and state.open_until == now + 120
    assert availability(state, now + 121, cfg).usable, "usable again (half-open) once the cap has passed"
    short = record_failure(BreakerState(), now, cfg, FailureReason.RATE_LIMITED, retry_after=3)
    assert short.open_until == now + 3, "a Retry-After under the cap is honoured as sent"


def test_a_shared_state_from_before_the_cap_is_clamped() -> None:
    cfg = BreakerSettings()  # cap 300 s, cooldown 30 s
    now = 1_000_000.0
    year_33700 = BreakerState(OPEN, 1, now + 1e12, 0, "rate_limited")
    capped = clamp(year_33700, now, cfg)
    assert capped.open_until == now + 300
    fine = BreakerState(OPEN, 1, now + 10, 0, "rate_limited")
    assert clamp(fine, now, cfg) is fine


@pytest.mark.parametrize("body, output", [
    ({"messages": PROMPT, "max_tokens": 100}, 100),
    ({"messages": PROMPT, "max_tokens": 100, "n": 1}, 100),
    ({"messages": PROMPT, "max_tokens": 100, "n": 128}, 12_800),
    ({"messages": PROMPT, "n": 3}, 3 * 4096),
    ({"messages": PROMPT, "max_tokens": 10, "best_of": 5}, 50),
])
def test_n_multiplies_the_worst_case(body: dict[str, Any], output: int) -> None:
    assert worst_case_usage(body, 4096).output_tokens == output


@pytest.mark.parametrize("n", [0, -1, 129, 10**9, 2.5, "3", True])
def test_an_absurd_n_is_a_400(n: Any) -> None:
    with pytest.raises(BadRequest) as info:
        ChatCompletionsFront().parse({"model": "m", "messages": PROMPT, "n": n})
    assert info.value.param == "n"


# --- end to end: real gateway processes, the strict fake, real Redis ----------------------

def _task(gw: Any, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        resp = httpx.get(f"{gw.url}/v1/tasks/{task_id}", timeout=5)
        if resp.status_code == 200 and resp.json().get("attempts"):
            return resp.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"no record for task {task_id}: {resp.status_code} {resp.text}")
        time.sleep(0.1)


@pytest.mark.parametrize("report", [
    {"prompt_tokens": -1_000_000},  # would have booked a credit
    {"prompt_tokens": 1e16, "total_tokens": 1e16},  # overflowed the Lua script
    {"completion_tokens": 2.5},
])
@pytest.mark.parametrize("stream", [False, True])
def test_absurd_usage_is_a_protocol_error_recorded_as_such(clean_fakes: Fakes, redis_server: RedisServer,
                                                          gateway_factory: Any, report: dict[str, Any],
                                                          stream: bool) -> None:
    fakes = clean_fakes
    cfg = base_config(redis_server.url, [model_entry("chat", fakes.params("openai"), id="oa")],
                      budgets={"tenants": {"default": {"daily_usd": 5}}})
    gw = gateway_factory(cfg)
    fakes.openai.usage_report = report
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    task_id = f"absurd-{'s' if stream else 'u'}-{abs(hash(orjson.dumps(report))) % 10**6}"
    if stream:
        chunks = client.chat.completions.create(model="chat", messages=PROMPT, stream=True,
                                                stream_options={"include_usage": True},
                                                extra_headers={"X-Task-Id": task_id})
        with pytest.raises(openai.APIError):  # the stream ends with an in-band error, not [DONE]
            for _ in chunks:
                pass
    else:
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="chat", messages=PROMPT, extra_headers={"X-Task-Id": task_id})
        assert info.value.status_code == 502
        assert info.value.body["code"] == "upstream_protocol_error"  # type: ignore[index]
        assert "unusable upstream usage" in info.value.message
    t = _task(gw, task_id)
    print(f"\n{'stream' if stream else 'unary'} {report}: attempts={t['attempts']} failed={t['failed_attempts']} "
          f"input={t['input_tokens']} output={t['output_tokens']} cost={t['cost_usd']} "
          f"estimated={t['estimated_attempts']}")
    assert t["attempts"] == 1 and t["failed_attempts"] == 1, "one attempt, recorded as failed"
    assert 0 <= t["input_tokens"] < 1000 and 0 <= t["output_tokens"] < 1000, "nothing absurd reached the ledger"
    assert t["cost_picousd"] >= 0 and t["estimated_attempts"] == 1, "what the upstream saw is a marked estimate"
    spend = redis.Redis.from_url(cfg["store"]["url"])
    try:
        keys = list(spend.scan_iter("tg:*spend*"))
        assert keys, "the tenant's spend was booked"
        for key in keys:
            for field, value in spend.hgetall(key).items():
                assert int(value) >= 0, f"{key!r} {field!r} went negative: {value!r}"
    finally:
        spend.close()
    # the gateway is still healthy and bills a sane answer exactly
    fakes.openai.usage_report = None
    ok = client.chat.completions.create(model="chat", messages=PROMPT)
    assert ok.usage is not None and ok.usage.prompt_tokens > 0


def test_retry_after_from_an_upstream_is_capped_in_the_shared_breaker(clean_fakes: Fakes,
                                                                     redis_server: RedisServer,
                                                                     gateway_factory: Any) -> None:
    fakes = clean_fakes
    cfg = base_config(redis_server.url, [model_entry("chat", fakes.params("openai"), id="oa")],
                      routing={"breaker": {"max_retry_after_s": 60}})
    gw = gateway_factory(cfg)
    fakes.openai.fail("429", retry_after="1e12")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    before = time.time()
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="chat", messages=PROMPT)
    store = redis.Redis.from_url(cfg["store"]["url"])
    try:
        deadline = time.monotonic() + 5
        raw = None
        while raw is None and time.monotonic() < deadline:
            raw = store.hget("tg:health", "oa")
            time.sleep(0.1)
        assert raw is not None, "the breaker state reached the shared hash"
        state = orjson.loads(raw)
        opened_for = state["open_until"] - before
        print(f"\nRetry-After 1e12 -> shared breaker open for {opened_for:.1f}s (cap 60 s)")
        assert state["phase"] == "open" and opened_for <= 61
        # a replica starting now inherits a capped state, and a legacy uncapped one is repaired
        store.hset("tg:health", "oa", orjson.dumps({**state, "open_until": time.time() + 1e12}))
        gw2 = gateway_factory(cfg)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            repaired = orjson.loads(store.hget("tg:health", "oa") or b"{}")
            if repaired.get("open_until", 1e18) <= time.time() + 61:
                break
            time.sleep(0.1)
        print(f"legacy open_until +1e12 s repaired to +{repaired['open_until'] - time.time():.1f}s")
        assert repaired["open_until"] <= time.time() + 61
        assert httpx.get(f"{gw2.url}/readyz", timeout=5).status_code == 200
    finally:
        store.close()


def test_n_counts_in_the_budget(clean_fakes: Fakes, redis_server: RedisServer, gateway_factory: Any) -> None:
    """The reservation for n=128 is 128 times the output worst case: a task budget that covers
    one answer refuses 128 before any upstream call."""
    fakes = clean_fakes
    params = {**fakes.params("openai"), "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000001}
    cfg = base_config(redis_server.url, [model_entry("chat", params, id="oa")])
    gw = gateway_factory(cfg)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    budget = Decimal("0.001")  # 1,000 tokens at $1/M: one answer of max_tokens=100 fits, 128 do not
    headers = {"X-Task-Budget-USD": str(budget)}
    one = client.chat.completions.create(model="chat", messages=PROMPT, max_tokens=100, n=1,
                                         extra_headers={**headers, "X-Task-Id": "n-one"})
    assert one.choices
    calls_before = fakes.openai.billed.requests
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="chat", messages=PROMPT, max_tokens=100, n=128,
                                       extra_headers={**headers, "X-Task-Id": "n-many"})
    print(f"\nn=1 admitted; n=128 refused: {info.value.message}")
    assert info.value.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert fakes.openai.billed.requests == calls_before, "refused before any upstream call"
