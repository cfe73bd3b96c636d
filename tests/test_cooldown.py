"""Honest cooldown answers (issue 10, defect 10).

* While every deployment of a model is rate-limited: 429 with the shortest remaining Retry-After.
* A 503 names each deployment and its cause in plain words, and speaks of data classes only
  where compliance applies.
* The panic threshold: when every deployment of a model is ejected for failures, probe traffic
  goes through instead of a 503 for the whole cooldown; never to a non-compliant deployment.

Pure tables first, then real gateway processes against the fakes.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from policies.decide import Policies, RequestFacts, decide
from policies.health import CLOSED, HALF_OPEN, OPEN, BreakerState, panic_probe, when_none_usable
from policies.schema import BreakerSettings, RoutingSection
from providers.base import Deployment
from tests.conftest import Fakes, RedisServer, base_config, model_entry

NOW = 1_000_000.0
PROMPT = [{"role": "user", "content": "count these five words"}]
A, B = Deployment("a", "chat", "openai", "m"), Deployment("b", "chat", "openai", "m")
LIMITED_20 = BreakerState(OPEN, 1, NOW + 20, 0, "rate_limited")
LIMITED_7 = BreakerState(OPEN, 1, NOW + 7, 0, "rate_limited")
FAILING = BreakerState(OPEN, 5, NOW + 25, 0, "timeout")
PROBING = BreakerState(HALF_OPEN, 5, NOW - 1, 1, "timeout")  # its one probe is in flight


@pytest.mark.parametrize("states, threshold, limited, probes, retry_after", [
    ({"a": LIMITED_20, "b": LIMITED_7}, 1.0, True, [], 7),  # all rate-limited: 429, the shortest wait
    ({"a": FAILING, "b": FAILING}, 1.0, False, ["a", "b"], 25),  # all ejected for failures: panic
    ({"a": FAILING, "b": FAILING}, 0.0, False, [], 25),  # panic off
    ({"a": FAILING, "b": LIMITED_7}, 1.0, False, [], 7),  # half rate-limited: not every one failing
    ({"a": FAILING, "b": LIMITED_7}, 0.5, False, ["a"], 7),  # ... unless the threshold allows; never b
    ({"a": FAILING, "b": PROBING}, 1.0, False, ["a"], 25),  # a probe in flight is not doubled
    ({"a": PROBING, "b": PROBING}, 1.0, False, [], 30),  # nothing more to probe: wait for the probes
])
def test_when_none_usable(states: dict[str, BreakerState], threshold: float, limited: bool, probes: list[str],
                          retry_after: float) -> None:
    cfg = BreakerSettings(panic_threshold=threshold)
    out = when_none_usable((A, B), states, NOW, cfg)
    assert out.all_rate_limited is limited
    assert [d.id for d in out.probes] == probes
    assert out.retry_after == pytest.approx(retry_after)


def test_panic_probe_half_opens_an_open_breaker_only() -> None:
    probed = panic_probe(FAILING, NOW)
    assert (probed.phase, probed.probes, probed.failures) == (HALF_OPEN, 0, 5)
    assert panic_probe(PROBING, NOW) == PROBING
    assert panic_probe(BreakerState(), NOW).phase == CLOSED


def _decide(states: dict[str, BreakerState], breaker: dict[str, Any] | None = None) -> Any:
    routing = RoutingSection.model_validate({"breaker": breaker or {}})
    return decide(RequestFacts("t", "chat", {"model": "chat", "messages": PROMPT}), (A, B), Policies(routing),
                  states, {}, {}, NOW, 0.5)


def test_all_rate_limited_is_a_429_with_the_shortest_wait_in_plain_words() -> None:
    denial = _decide({"a": LIMITED_20, "b": LIMITED_7}).denial
    print(f"\n429: {denial.message}")
    assert (denial.status, denial.code, denial.retry_after) == (429, "rate_limit_exceeded", pytest.approx(7))
    assert "a: circuit open: rate-limited by its provider" in denial.message and "b: " in denial.message
    assert "data class" not in denial.message and "None" not in denial.message


def test_a_503_names_deployments_and_causes_without_data_class_wording() -> None:
    denial = _decide({"a": FAILING, "b": LIMITED_7}).denial
    print(f"\n503: {denial.message}")
    assert (denial.status, denial.code) == (503, "no_available_deployment")
    assert "a: circuit open: failing (5 timeout failure(s) in a row)" in denial.message
    assert "b: circuit open: rate-limited by its provider" in denial.message
    assert "data class" not in denial.message and "None" not in denial.message
    assert denial.retry_after == pytest.approx(7)


def test_panic_routes_to_the_ejected_deployments_and_says_so() -> None:
    decision = _decide({"a": FAILING, "b": FAILING})
    assert decision.denial is None and [d.id for d in decision.ordered] == ["a", "b"]
    assert decision.probes == ("a", "b")
    assert [e.kind for e in decision.audit_events] == ["panic"]
    assert decision.explain()["panic_probes"] == ["a", "b"]
    off = _decide({"a": FAILING, "b": FAILING}, {"panic_threshold": 0})
    assert off.denial is not None and off.denial.status == 503 and off.probes == ()


# --- end to end --------------------------------------------------------------------------------

def _client(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)


def test_every_deployment_rate_limited_answers_429_with_the_shortest_retry_after(
        clean_fakes: Fakes, redis_server: RedisServer, gateway_factory: Any) -> None:
    fakes = clean_fakes
    cfg = base_config(redis_server.url, [model_entry("chat", fakes.params("openai"), id="oa"),
                                         model_entry("chat", fakes.params("azure"), id="az")])
    gw = gateway_factory(cfg)
    fakes.openai.fail("429", retry_after=40)
    fakes.azure.fail("429", retry_after=9)
    c = _client(gw)
    with pytest.raises(openai.RateLimitError):  # both upstreams said 429: the last one's answer
        c.chat.completions.create(model="chat", messages=PROMPT)
    calls = len(fakes.openai.requests) + len(fakes.azure.requests)
    with pytest.raises(openai.RateLimitError) as info:  # within the window: no upstream call, an honest 429
        c.chat.completions.create(model="chat", messages=PROMPT)
    retry_after = int(info.value.response.headers["retry-after"])
    message = info.value.body["message"]  # type: ignore[index]
    print(f"\nwithin the cooldown: 429 retry-after={retry_after}: {message}")
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert 1 <= retry_after <= 9, "the shortest remaining Retry-After"
    assert "oa:" in message and "az:" in message and "rate-limited" in message
    assert "data class" not in message and "None" not in message
    assert len(fakes.openai.requests) + len(fakes.azure.requests) == calls, "no upstream was called"


def test_panic_lets_a_recovered_single_deployment_model_answer_within_the_cooldown(
        clean_fakes: Fakes, redis_server: RedisServer, gateway_factory: Any) -> None:
    fakes = clean_fakes
    models = [model_entry("chat", fakes.params("openai"), id="oa")]
    breaker = {"failures": 2, "cooldown_s": 30}
    gw = gateway_factory(base_config(redis_server.url, models, routing={"breaker": breaker, "retries": {"max": 0}}))
    c = _client(gw)
    fakes.openai.fail("500", times=2)
    for _ in range(2):  # two failures eject the only deployment for 30 s
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="chat", messages=PROMPT)
    t0 = time.monotonic()
    reply = c.chat.completions.create(model="chat", messages=PROMPT)  # the upstream recovered: the probe answers
    print(f"\npanic: answered {time.monotonic() - t0:.2f}s into a 30 s cooldown: {reply.choices[0].message.content}")
    assert reply.choices[0].message.content
    assert c.chat.completions.create(model="chat", messages=PROMPT).choices, "the probe closed the breaker"
    audit = httpx.get(f"{gw.url}/v1/audit", timeout=5)
    if audit.status_code == 200:
        kinds = [e.get("kind") for e in audit.json().get("data", [])]
        assert "panic" in kinds, kinds

    # the same with panic routing off: a 503 for the cooldown, naming the deployment and cause
    gw_off = gateway_factory(base_config(redis_server.url, models,
                                         routing={"breaker": {**breaker, "panic_threshold": 0},
                                                  "retries": {"max": 0}}))
    c_off = _client(gw_off)
    fakes.openai.fail("500", times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            c_off.chat.completions.create(model="chat", messages=PROMPT)
    with pytest.raises(openai.APIStatusError) as info:
        c_off.chat.completions.create(model="chat", messages=PROMPT)
    message = info.value.body["message"]  # type: ignore[index]
    print(f"panic off: {info.value.status_code} {message}")
    assert info.value.status_code == 503 and info.value.body["code"] == "no_available_deployment"  # type: ignore[index]
    assert "oa: circuit open: failing (2 server error failure(s) in a row)" in message
    assert "data class" not in message and "None" not in message


def test_panic_never_probes_a_non_compliant_deployment(clean_fakes: Fakes, redis_server: RedisServer,
                                                       gateway_factory: Any) -> None:
    from tests.test_policy_e2e import PROMPT as P2
    from tests.test_policy_e2e import answered_by, cfg, client, cloud_calls

    fakes = clean_fakes
    gw = gateway_factory(cfg(fakes, redis_server.url))  # panic on (the default)
    c = client(gw)
    fakes.ollama.fail("503", times=2)
    for _ in range(2):  # the only deployment allowed restricted data is ejected
        with pytest.raises(openai.APIStatusError):
            c.chat.completions.create(model="assistant", messages=P2, extra_headers={"X-Data-Class": "restricted"})
    reply = c.chat.completions.create(model="assistant", messages=P2, extra_headers={"X-Data-Class": "restricted"})
    print(f"\npanic with compliance: answered by {answered_by(reply)}; cloud calls {cloud_calls(fakes)}")
    assert answered_by(reply) == "ollama" and cloud_calls(fakes) == 0
