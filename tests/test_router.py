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
BODIES = [
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
    assert router.decide(snapshot, "t", "m", group, BODIES[0], None, None).considered == ()
    for body in BODIES[1:]:
        assert router.decide(snapshot, "t", "m", group, body, None, None).considered != ()
