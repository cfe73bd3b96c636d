"""Capability filter: tools, vision, context length, streaming; unknown means allowed."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from policies.capabilities import (
    ModelFacts,
    Needs,
    filter_capable,
    model_facts,
    needs_of,
)
from providers.base import Deployment


def dep(**info: Any) -> Deployment:
    return Deployment("d", "chat", "openai", "gpt-x", model_info=MappingProxyType(info))


FULL = ModelFacts(True, True, 128_000, 16_000)
NO_TOOLS = ModelFacts(False, True, 128_000)
NO_VISION = ModelFacts(True, False, 128_000)
SMALL = ModelFacts(None, None, 4096)
UNKNOWN = ModelFacts()


@pytest.mark.parametrize("needs, facts, deployment, rule", [
    (Needs(), FULL, dep(), None),
    (Needs(tools=True), FULL, dep(), None),
    (Needs(tools=True), NO_TOOLS, dep(), "capability.tools"),
    (Needs(tools=True), UNKNOWN, dep(), None),  # unknown: allowed
    (Needs(tools=False), NO_TOOLS, dep(), None),
    (Needs(vision=True), NO_VISION, dep(), "capability.vision"),
    (Needs(vision=True), UNKNOWN, dep(), None),
    (Needs(prompt_tokens=4096), SMALL, dep(), None),
    (Needs(prompt_tokens=4097), SMALL, dep(), "capability.context"),
    (Needs(prompt_tokens=10**9), UNKNOWN, dep(), None),
    (Needs(stream=True), FULL, dep(supports_streaming=False), "capability.streaming"),
    (Needs(stream=True), FULL, dep(supports_streaming=True), None),
    (Needs(stream=True), FULL, dep(), None),
    (Needs(stream=False), FULL, dep(supports_streaming=False), None),
    (Needs(tools=True, vision=True), ModelFacts(False, False), dep(), "capability.tools"),  # first rule named
])
def test_filter_capable(needs: Needs, facts: ModelFacts, deployment: Deployment, rule: str | None) -> None:
    result = filter_capable([deployment], needs, {"d": facts})
    assert [c.rule for c in result.excluded] == ([rule] if rule else [])
    assert result.allowed == (() if rule else (deployment,))


def test_missing_facts_are_unknown() -> None:
    assert filter_capable([dep()], Needs(tools=True, vision=True, prompt_tokens=10**7), {}).allowed == (dep(),)


@pytest.mark.parametrize("body, needs", [
    ({"messages": [{"role": "user", "content": "hi"}]}, Needs(prompt_tokens=7)),
    ({"messages": [], "tools": [{"type": "function"}], "stream": True}, Needs(tools=True, stream=True, prompt_tokens=7)),
    ({"messages": [], "functions": [{"name": "f"}]}, Needs(tools=True, prompt_tokens=7)),
    ({"messages": [], "tools": []}, Needs(prompt_tokens=7)),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"},
                                                {"type": "image_url", "image_url": {"url": "data:..."}}]}]},
     Needs(vision=True, prompt_tokens=7)),
    ({"messages": "garbage"}, Needs(prompt_tokens=7)),
])
def test_needs_of(body: dict, needs: Needs) -> None:
    assert needs_of(body, 7) == needs


def test_model_info_overrides_the_price_map() -> None:
    entry = {"supports_function_calling": True, "supports_vision": True, "max_input_tokens": 8192, "mode": "chat"}
    assert model_facts(dep(), entry) == ModelFacts(True, True, 8192, None)
    assert model_facts(dep(supports_vision=False, max_input_tokens=4096), entry) == ModelFacts(True, False, 4096)
    assert model_facts(dep(), None) == ModelFacts()
