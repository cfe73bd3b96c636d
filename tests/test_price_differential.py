"""Taskgate's prices against the reference: LiteLLM 1.106.2's own cost functions, over the whole price map.

Cases are generated from the bundled price map (tests/pricing/differential.py):
every chat, responses and embedding model crossed with the usage shapes it
prices — plain, cached, cache writes (5 minutes and 1 hour), reasoning, audio,
above each token tier, and each service tier — as raw provider responses fed
through Taskgate's adapters. Every disagreement is fixed or listed, with its
reason and evidence, in tests/pricing/allowlist.txt.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest

from tests.pricing.differential import Outcome, bundled_map, read_allowlist, run

ALLOWLIST = os.path.join(os.path.dirname(__file__), "pricing", "allowlist.txt")


@pytest.fixture(scope="session")
def litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


@pytest.fixture(scope="session")
def outcomes(litellm: Any) -> list[Outcome]:
    return run(litellm, bundled_map())


def test_every_case_agrees_or_is_documented(outcomes: list[Outcome], capsys: pytest.CaptureFixture[str]) -> None:
    allowed = read_allowlist(ALLOWLIST)
    exact = sum(o.exact for o in outcomes)
    with capsys.disabled():
        print(f"\nprice differential vs litellm 1.106.2: {exact} of {len(outcomes)} cases exact "
              f"({len(allowed)} documented disagreements)")
    undocumented = [f"{o.case.id}: taskgate={o.taskgate} litellm={o.litellm}" for o in outcomes
                    if not o.exact and o.case.id not in allowed]
    assert not undocumented, "\n".join(undocumented[:30])
    stale = sorted(set(allowed) - {o.case.id for o in outcomes if not o.exact})
    assert not stale, f"these allow-listed cases agree now (or no longer exist): {stale[:30]}"


def test_the_cases_cover_the_map(outcomes: list[Outcome]) -> None:
    shapes = Counter(o.case.id.split(" ", 1)[1].split("-")[0] for o in outcomes)
    kinds = Counter(o.case.kind for o in outcomes)
    assert len(outcomes) > 5000
    for shape in ("plain", "cached", "cache", "reasoning", "audio", "image", "above", "tier"):
        assert shapes[shape] >= 10, shape
    for kind in ("openai", "azure", "bedrock", "ollama"):
        assert kinds[kind] >= 1, kind
    # the adapter-backed providers agree everywhere: their allow-list is empty
    allowed = read_allowlist(ALLOWLIST)
    assert not [o for o in outcomes if o.case.id in allowed and o.case.kind in ("openai", "azure", "bedrock")]


def test_the_comparison_can_fail(litellm: Any) -> None:
    """A price map edited after the fact must show up as disagreements (the harness is not vacuous)."""
    price_map = {k: dict(v) for k, v in bundled_map().items() if k in ("gpt-4o", "gpt-5.4")}
    price_map["gpt-4o"]["cache_read_input_token_cost"] = price_map["gpt-4o"]["input_cost_per_token"]
    wrong = {o.case.id for o in run(litellm, price_map) if not o.exact}
    assert "gpt-4o cached" in wrong and "gpt-4o plain" not in wrong and "gpt-5.4 cached" not in wrong
