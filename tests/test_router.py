"""The router's fast path for trivial decisions gives exactly what the full decision gives."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.accounting.metrics import Metrics
from gateway.config.load import parse
from gateway.proxy.router import Router
from gateway.snapshot import Snapshot, build_snapshot
from gateway.upstream.health import HealthBook
from policies.health import BreakerState

CONFIG = """
model_list:
  - {model_name: m, litellm_params: {model: openai/gpt-4o-mini, api_key: k}, model_info: {id: a}}
  - {model_name: m, litellm_params: {model: azure/gpt-4o-mini, api_base: "https://x", api_key: k}, model_info: {id: b}}
  - {model_name: m, litellm_params: {model: hosted_vllm/q, api_base: "http://h/v1"},
     model_info: {id: c, max_input_tokens: 50, supports_streaming: false}}
"""
BODIES: list[dict[str, Any]] = [
    {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]},  # over c's 50-token context
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},  # c cannot stream
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function",
                                                                                "function": {"name": "f"}}]},
]


@pytest.fixture
def snapshot() -> Snapshot:
    return build_snapshot(parse(CONFIG, "t.yaml", {}))


@pytest.fixture
def router() -> Router:
    return Router(HealthBook(redis=None), Metrics(), lambda entry: None)  # type: ignore[arg-type]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("open_breaker", [None, "a"])
def test_fast_path_matches_the_full_decision(snapshot: Snapshot, router: Router, body: dict[str, Any],
                                             open_breaker: str | None) -> None:
    if open_breaker:
        router.health.breakers[open_breaker] = BreakerState("open", 5, 1e18, 0, "server_error")
    group = snapshot.config.groups["m"]
    fast = router.decide(snapshot, "t", "m", group, body, None, None)
    full = router.decide(snapshot, "t", "m", group, body, None, None, explain=True)
    assert [d.id for d in fast.ordered] == [d.id for d in full.ordered]
    assert fast.denial == full.denial


def test_fast_path_is_taken_only_when_trivial(snapshot: Snapshot, router: Router) -> None:
    group = snapshot.config.groups["m"]
    # (the fast path never works out ``passing``; the full decision, lite or not, always does)
    assert router.decide(snapshot, "t", "m", group, BODIES[0], None, None).passing is None
    for body in BODIES[1:]:
        assert router.decide(snapshot, "t", "m", group, body, None, None).passing is not None
        assert router.decide(snapshot, "t", "m", group, body, None, None, explain=True).considered != ()


LATENCY_CONFIG = CONFIG + "routing: {default_strategy: latency}\n"


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("open_breaker", [None, "a"])
@pytest.mark.parametrize("samples", [{}, {"b": 0.2, "c": 0.1}, {"a": 0.3, "b": 0.2, "c": 0.1}, {"a": 0.1}])
def test_the_latency_fast_path_matches_the_full_decision(router: Router, body: dict[str, Any],
                                                         open_breaker: str | None, samples: dict[str, float]) -> None:
    from policies.strategies import LatencyStats
    snap = build_snapshot(parse(LATENCY_CONFIG, "t.yaml", {}))
    if open_breaker:
        router.health.breakers[open_breaker] = BreakerState("open", 5, 1e18, 0, "server_error")
    router.health.latency.update({i: LatencyStats(s, s / 2 if i == "b" else None, 3) for i, s in samples.items()})
    group = snap.config.groups["m"]
    fast = router.decide(snap, "t", "m", group, body, None, None)
    full = router.decide(snap, "t", "m", group, body, None, None, explain=True)
    assert [d.id for d in fast.ordered] == [d.id for d in full.ordered]
    assert fast.denial == full.denial and fast.strategy == full.strategy == "latency"


def test_the_latency_fast_path_is_taken(router: Router) -> None:
    from policies.strategies import LatencyStats
    snap = build_snapshot(parse(LATENCY_CONFIG, "t.yaml", {}))
    router.health.latency.update({"a": LatencyStats(0.3, None, 3), "b": LatencyStats(0.2, None, 3)})
    decision = router.decide(snap, "t", "m", snap.config.groups["m"], BODIES[0], None, None)
    assert decision.passing is None and [d.id for d in decision.ordered] == ["c", "b", "a"]
