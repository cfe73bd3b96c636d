"""The cost_per_success strategy as a pure function: table-driven, seeded.

Arms are given as (jobs, successes, total cost in pico-dollars); the order of ids is
the configured (model_list) order.
"""

from __future__ import annotations

import time
from random import Random
from types import MappingProxyType
from typing import Any

import pytest
from pydantic import ValidationError

from policies.cost_per_success import ArmStats, Params, choose
from policies.decide import Policies, RequestFacts, decide
from policies.schema import ModelRouting, RoutingSection
from providers.base import Deployment

U = 10**12  # one dollar


def arms(**spec: tuple[float, float, int]) -> dict[str, ArmStats]:
    return {k: ArmStats(j, s, c) for k, (j, s, c) in spec.items()}


class NoExplore(Random):
    """random() is always 0.99: never below any explore_share < 0.99."""

    def random(self) -> float:
        return 0.99


class Explore(Random):
    """random() is always 0.0: always explores when explore_share > 0."""

    def random(self) -> float:
        return 0.0


# (name, stats, params, expected order, reason starts with)
EXPLOIT = [
    ("no data: configured order", {}, Params(), ("a", "b", "c"), "fewer than min_samples"),
    ("one arm sampled: it, then under-sampled in order",
     arms(b=(20, 19, 20 * U)), Params(), ("b", "a", "c"), "lowest observed"),
    ("cheaper per success wins even though dearer per job",
     arms(a=(50, 20, 25 * U), b=(50, 48, 50 * U), c=(50, 45, 60 * U)), Params(), ("b", "a", "c"), "lowest observed"),
    ("cheap and reliable wins",
     arms(a=(50, 20, 25 * U), b=(50, 48, 50 * U), c=(50, 48, 20 * U)), Params(), ("c", "b", "a"), "lowest observed"),
    ("below min_success_rate is last, whatever its cost",
     arms(a=(50, 20, 1 * U), b=(50, 48, 50 * U)), Params(min_success_rate=0.8), ("b", "c", "a"), "lowest observed"),
    ("nothing sampled meets the rate: under-sampled first, in order",
     arms(a=(50, 20, 1 * U)), Params(min_success_rate=0.8), ("b", "c", "a"), "no deployment with min_samples"),
    ("nothing meets the rate and all sampled: best rate first",
     arms(a=(50, 20, U), b=(50, 30, U), c=(50, 10, U)), Params(min_success_rate=0.9), ("b", "a", "c"),
     "no deployment meets"),
    ("zero successes is an infinite cost per success",
     arms(a=(50, 0, 0), b=(50, 10, 50 * U)), Params(), ("b", "a", "c"), "lowest observed"),
    ("ties keep the configured order",
     arms(a=(20, 10, 10 * U), b=(20, 10, 10 * U), c=(20, 10, 10 * U)), Params(), ("a", "b", "c"), "lowest"),
]


@pytest.mark.parametrize("name,stats,params,expected,reason", EXPLOIT, ids=[e[0] for e in EXPLOIT])
def test_exploit(name: str, stats: dict[str, ArmStats], params: Params, expected: tuple[str, ...],
                 reason: str) -> None:
    choice = choose(["a", "b", "c"], stats, params, NoExplore())
    assert choice.order == expected
    assert not choice.explored and choice.reason.startswith(reason), choice.reason


EXPLORE = [
    ("the under-sampled arm with fewest jobs", arms(a=(50, 48, U), b=(3, 3, U), c=(1, 1, U)), "c"),
    ("fewest jobs, ties in configured order", arms(a=(50, 48, U)), "b"),
]


@pytest.mark.parametrize("name,stats,first", EXPLORE, ids=[e[0] for e in EXPLORE])
def test_explore_gives_under_sampled_arms_samples(name: str, stats: dict[str, ArmStats], first: str) -> None:
    choice = choose(["a", "b", "c"], stats, Params(), Explore())
    assert choice.explored and choice.order[0] == first
    assert choice.why[first].startswith("explored: ")


def test_thompson_sampling_is_seeded_and_mostly_picks_the_best() -> None:
    stats = arms(a=(100, 40, 50 * U), b=(100, 95, 100 * U), c=(100, 90, 95 * U))
    params = Params(explore_share=1.0, min_samples=10)
    runs = [[choose(["a", "b", "c"], stats, params, Random(seed)).order[0] for seed in range(400)] for _ in range(2)]
    assert runs[0] == runs[1]  # the same seeds give the same choices
    counts = {k: runs[0].count(k) for k in "abc"}
    assert counts["b"] + counts["c"] == 400 - counts["a"]
    assert counts["a"] < 40  # cost per success $1.25 vs $1.05: rarely sampled as best
    assert counts["b"] > 50 and counts["c"] > 50  # b and c are close: both explored
    detail = choose(["a", "b", "c"], stats, params, Random(1)).detail
    assert all("sampled" in arm for arm in detail["arms"])


def test_explore_share_bounds_exploration() -> None:
    stats = arms(a=(100, 95, 10 * U), b=(100, 95, 20 * U))
    rng = Random(7)
    explored = sum(choose(["a", "b"], stats, Params(explore_share=0.1), rng).explored for _ in range(5000))
    assert 400 <= explored <= 600
    assert not any(choose(["a", "b"], stats, Params(explore_share=0.0), rng).explored for _ in range(500))


def test_min_success_rate_excludes_a_cheap_unreliable_arm_under_thompson() -> None:
    stats = arms(a=(100, 40, 1 * U), b=(100, 95, 50 * U))
    picks = [choose(["a", "b"], stats, Params(min_success_rate=0.8, explore_share=1.0), Random(s)).order[0]
             for s in range(300)]
    assert picks.count("a") == 0


def test_detail_holds_the_numbers() -> None:
    stats = arms(a=(10, 4, 4 * U), b=(20, 19, 38 * U))
    d = choose(["a", "b"], stats, Params(min_success_rate=0.5, min_samples=10), NoExplore()).detail
    assert d["chosen"] == "b" and d["explored"] is False and d["min_success_rate"] == 0.5
    a, b = d["arms"]
    assert a == {"deployment": "a", "jobs": 10, "successes": 4, "success_rate": 0.4, "cost_per_job_usd": "0.400000",
                 "cost_per_success_usd": "1.000000", "samples": 10, "enough_samples": True,
                 "meets_min_success_rate": False}
    assert b["cost_per_success_usd"] == "2.000000" and b["meets_min_success_rate"] is True


@pytest.mark.parametrize("raw,error", [
    ({"strategy": "cost", "min_success_rate": 0.5}, "only used by strategy 'cost_per_success'"),
    ({"strategy": "cost_per_success", "min_success_rate": 1.5}, "less than or equal to 1"),
    ({"strategy": "cost_per_success", "min_samples": 50, "window": 50}, "must be larger than 'min_samples'"),
    ({"strategy": "cost_per_success", "explore_share": -0.1}, "greater than or equal to 0"),
])
def test_schema(raw: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        ModelRouting.model_validate(raw)


def test_defaults() -> None:
    mr = ModelRouting.model_validate({"strategy": "cost_per_success"})
    assert [mr.cps(k) for k in ("min_success_rate", "explore_share", "min_samples", "window")] == [0, 0.1, 10, 200]


DEPS = tuple(Deployment(i, "m", "openai", "x", model_info=MappingProxyType({})) for i in ("a", "b", "c"))
POLICIES = Policies(RoutingSection.model_validate({"models": {"m": {"strategy": "cost_per_success",
                                                                    "min_success_rate": 0.8}}}))
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_decide_uses_the_outcomes_and_explains_them() -> None:
    stats = arms(a=(50, 20, 10 * U), b=(50, 48, 50 * U), c=(50, 49, 30 * U))
    decision = decide(RequestFacts("t", "m", BODY, task_type="triage"), DEPS, POLICIES, {}, {}, {}, 0.0, 0.5,
                      outcomes=stats, rng=NoExplore())
    assert [d.id for d in decision.ordered] == ["c", "b", "a"]
    out = decision.explain()
    assert out["strategy"] == "cost_per_success"
    assert out["strategy_detail"]["task_type"] == "triage" and out["strategy_detail"]["chosen"] == "c"
    assert [a["deployment"] for a in out["strategy_detail"]["arms"]] == ["a", "b", "c"]


def test_decision_is_cheap() -> None:
    """The strategy itself (no I/O): reports microseconds per decision."""
    stats = arms(a=(50, 20, 10 * U), b=(50, 48, 50 * U), c=(50, 49, 30 * U))
    rng, n = Random(1), 5000
    start = time.perf_counter()
    for _ in range(n):
        choose(["a", "b", "c"], stats, Params(min_success_rate=0.8), rng)
    per = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n // 5):
        decide(RequestFacts("t", "m", BODY, task_type="triage"), DEPS, POLICIES, {}, {}, {}, 0.0, 0.5,
               outcomes=stats, rng=rng)
    full = (time.perf_counter() - start) / (n // 5) * 1e6
    cost = Policies(RoutingSection.model_validate({"models": {"m": {"strategy": "cost"}}}))
    start = time.perf_counter()
    for _ in range(n // 5):
        decide(RequestFacts("t", "m", BODY, task_type="triage"), DEPS, cost, {}, {}, {}, 0.0, 0.5)
    base = (time.perf_counter() - start) / (n // 5) * 1e6
    print(f"\ncost_per_success: choose() {per:.1f} us, decide() {full:.1f} us per decision (3 deployments); "
          f"decide() with the cost strategy {base:.1f} us")
    assert per < 200
