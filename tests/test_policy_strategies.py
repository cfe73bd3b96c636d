"""Routing strategies, table-driven: priority, weighted, latency, cost, budget; and the EWMA."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.schema import ModelRouting
from policies.strategies import (
    LatencySample,
    LatencyStats,
    StrategyInputs,
    order,
    update_ewma,
    worst_case_picousd,
)
from providers.base import Deployment

DEPS = tuple(Deployment(i, "chat", "openai", i) for i in ("a", "b", "c", "d"))


@dataclass(frozen=True)
class P:
    input: Decimal
    output: Decimal


def price(inp: str, out: str) -> P:
    return P(Decimal(inp), Decimal(out))


def ids(result) -> list[str]:  # noqa: ANN001
    return [d.id for d in result.ordered]


def test_priority_is_model_list_order() -> None:
    assert ids(order(ModelRouting(), DEPS, StrategyInputs())) == ["a", "b", "c", "d"]


WEIGHTS = ModelRouting(strategy="weighted", weights={"a": 1, "b": 3, "c": 0})


@pytest.mark.parametrize("rand, expected", [
    (0.0, ["a", "b", "c", "d"]),  # [0, .25) picks a; the rest of the draw then picks b
    (0.2, ["a", "b", "c", "d"]),
    (0.25, ["b", "a", "c", "d"]),
    (0.99, ["b", "a", "c", "d"]),
    (0.999999999999999, ["b", "a", "c", "d"]),
    (1.0, ["b", "a", "c", "d"]),  # out of range is clamped
    (-1.0, ["a", "b", "c", "d"]),
])
def test_weighted_is_deterministic_given_the_random_number(rand: float, expected: list[str]) -> None:
    assert ids(order(WEIGHTS, DEPS, StrategyInputs(rand=rand))) == expected


def test_weighted_frequencies_follow_the_weights() -> None:
    firsts = Counter(ids(order(WEIGHTS, DEPS, StrategyInputs(rand=i / 1000)))[0] for i in range(1000))
    assert firsts == {"a": 250, "b": 750}


def test_weighted_draws_without_replacement_with_three() -> None:
    mr = ModelRouting(strategy="weighted", weights={"a": 1, "b": 1, "c": 2})
    seconds = Counter(ids(order(mr, DEPS, StrategyInputs(rand=i / 1000)))[1] for i in range(1000))
    # P(second = c) = P(a first) * 2/3 + P(b first) * 2/3 = 1/3; P(second = a) = 1/4 * 1/3 + 1/2 * 1/2 = 1/3
    assert all(seconds[k] == pytest.approx(333, abs=3) for k in "abc")


@pytest.mark.parametrize("stats, stream, expected", [
    ({}, False, ["a", "b", "c", "d"]),  # nothing measured: explore all, in model_list order
    ({"a": LatencyStats(2.0, 0.5, 3), "b": LatencyStats(1.0, 0.9, 3), "c": LatencyStats(3.0, None, 1)}, False,
     ["d", "b", "a", "c"]),  # d has no sample: explored first
    ({"a": LatencyStats(2.0, 0.5, 3), "b": LatencyStats(1.0, 0.9, 3), "c": LatencyStats(3.0, None, 1),
      "d": LatencyStats(0.5, None, 2)}, True, ["a", "b", "d", "c"]),  # streams: TTFT first where known
    ({"a": LatencyStats(1.0, None, 1), "b": LatencyStats(1.0, None, 1), "c": LatencyStats(None, None, 0),
      "d": LatencyStats(0.1, None, 1)}, False, ["c", "d", "a", "b"]),  # ties keep model_list order
])
def test_latency_order(stats: dict[str, LatencyStats], stream: bool, expected: list[str]) -> None:
    mr = ModelRouting(strategy="latency")
    assert ids(order(mr, DEPS, StrategyInputs(latency=stats, stream=stream))) == expected


@pytest.mark.parametrize("old, sample, alpha, expected", [
    (None, LatencySample(2.0, 0.4), 0.3, LatencyStats(2.0, 0.4, 1)),  # first sample taken as is
    (LatencyStats(2.0, 0.4, 1), LatencySample(1.0, 0.2), 0.5, LatencyStats(1.5, 0.3, 2)),
    (LatencyStats(2.0, 0.4, 1), LatencySample(1.0), 0.5, LatencyStats(1.5, 0.4, 2)),  # no TTFT: kept
    (LatencyStats(2.0, None, 4), LatencySample(4.0, 1.0), 1.0, LatencyStats(4.0, 1.0, 5)),
])
def test_update_ewma(old: LatencyStats | None, sample: LatencySample, alpha: float, expected: LatencyStats) -> None:
    got = update_ewma(old, sample, alpha)
    assert got.samples == expected.samples
    assert got.latency_s == pytest.approx(expected.latency_s)
    assert got.ttft_s == pytest.approx(expected.ttft_s) if expected.ttft_s is not None else got.ttft_s is None


PRICES = {"a": price("0.00001", "0.00003"), "b": price("0.000001", "0.000002"), "d": price("0.000001", "0.00005")}


@pytest.mark.parametrize("prompt, output, expected", [
    (1000, 10, ["b", "d", "a", "c"]),  # b 1.02e-3, d 1.5e-3, a 1.03e-2; c unpriced last
    (10, 1000, ["b", "a", "d", "c"]),  # output dominates: d's output price is the highest
])
def test_cost_order(prompt: int, output: int, expected: list[str]) -> None:
    mr = ModelRouting(strategy="cost")
    assert ids(order(mr, DEPS, StrategyInputs(prices=PRICES, prompt_tokens=prompt, output_tokens=output))) == expected


def test_worst_case_is_exact_and_rounds_up() -> None:
    assert worst_case_picousd(price("0.0000025", "0.00001"), 1000, 100) == 3_500_000_000
    assert worst_case_picousd(price("0.0000000000001", "0"), 1, 0) == 1


BUDGET = ModelRouting(strategy="budget", tiers=[["a"], ["b", "d"]], low_budget_usd=Decimal("0.50"))
BUDGET_PRICES = {"a": price("0.00001", "0.00003"), "b": price("0.000001", "0.000002"),
                 "d": price("0.000002", "0.000002"), "c": price("0", "0")}
USD = 10**12


@pytest.mark.parametrize("remaining, prices, expected, dropped, code", [
    (None, BUDGET_PRICES, ["a", "b", "d", "c"], [], None),  # no budget: tiers in order, c in the implicit tier
    (10 * USD, BUDGET_PRICES, ["a", "b", "d", "c"], [], None),
    (USD // 4, BUDGET_PRICES, ["b", "d", "c"], ["a"], None),  # below low_budget_usd: first tier skipped
    # a worst case (1000 in, 1000 out) of $0.04 does not fit $0.03; b ($0.003) and d ($0.004) do
    (3 * USD // 100, BUDGET_PRICES, ["b", "d", "c"], ["a"], None),
    (35 * USD // 10000, {**BUDGET_PRICES, "c": None}, ["b"], ["a", "d", "c"], None),  # c unpriced: dropped
    (USD // 10000, {**BUDGET_PRICES, "c": None}, [], ["a", "b", "d", "c"], "budget_exceeded"),
    (0, BUDGET_PRICES, ["c"], ["a", "b", "d"], None),  # a free deployment always fits
])
def test_budget(remaining: int | None, prices: dict, expected: list[str], dropped: list[str],
                code: str | None) -> None:
    result = order(BUDGET, DEPS, StrategyInputs(model="chat", prices=prices, prompt_tokens=1000,
                                                output_tokens=1000, budget_remaining_picousd=remaining))
    assert ids(result) == expected
    assert sorted(c.deployment_id for c in result.dropped) == sorted(dropped)
    assert (result.denial.code if result.denial else None) == code
    if code:
        assert result.denial.status == 429 and result.denial.rule == "routing.models.chat.tiers"


def test_budget_tier_keeps_its_listed_order() -> None:
    mr = ModelRouting(strategy="budget", tiers=[["d", "b"], ["a"]])
    assert ids(order(mr, DEPS, StrategyInputs())) == ["d", "b", "a", "c"]


@pytest.mark.parametrize("mr", [ModelRouting(), WEIGHTS, ModelRouting(strategy="latency"),
                                ModelRouting(strategy="cost"), BUDGET])
def test_every_strategy_explains_every_position(mr: ModelRouting) -> None:
    result = order(mr, DEPS, StrategyInputs(prices=BUDGET_PRICES, rand=0.5))
    assert {d.id for d in result.ordered} <= set(result.why)
    assert all(result.why[d.id] for d in result.ordered)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["priority", "weighted", "latency", "cost", "budget"]), st.floats(0, 1),
       st.permutations(DEPS), st.none() | st.integers(0, 10 * USD))
def test_strategies_only_reorder_or_drop(strategy: str, rand: float, deps: list[Deployment],
                                         remaining: int | None) -> None:
    extra = {"weighted": {"weights": {"a": 2, "c": 1}}, "budget": {"tiers": [["c"], ["a", "b"]],
                                                                    "low_budget_usd": Decimal(1)}}
    mr = ModelRouting(strategy=strategy, **extra.get(strategy, {}))
    result = order(mr, deps, StrategyInputs(rand=rand, prices=BUDGET_PRICES, prompt_tokens=500, output_tokens=500,
                                            latency={"b": LatencyStats(1.0, None, 1)},
                                            budget_remaining_picousd=remaining))
    got = [d.id for d in result.ordered]
    assert len(got) == len(set(got)) and set(got) <= {d.id for d in deps}
    assert set(got) | {c.deployment_id for c in result.dropped} == {d.id for d in deps}
    assert (result.denial is not None) == (not got)
