"""Routing strategies: the order in which to try the deployments that may serve a request (pure).

A strategy only orders (and, for ``budget``, drops) deployments it is given;
compliance, capability and health filtering happen before it.

    priority  the order of ``model_list``
    weighted  a weighted random order from ``weights`` (one random number in, so the
              same number gives the same order); weight 0 or unlisted: fallback only,
              in ``model_list`` order
    latency   lowest EWMA first (time to first token for streams when known, else
              total latency); deployments with no sample yet go first, to be explored
    cost      cheapest expected cost first: prompt tokens x input price + output
              tokens (max_tokens, else routing.assumed_output_tokens) x output price;
              unpriced deployments last
    budget    ``tiers`` in order (preferred first, cheapest last; deployments in no
              tier form an implicit last tier). When the task's remaining budget is
              below ``low_budget_usd`` the first tier is skipped. A deployment whose
              worst-case cost does not fit the remaining budget, or that has no
              price, is dropped; when none is left the request is denied
              (429 ``budget_exceeded``)
    cost_per_success
              lowest observed cost per succeeded job of the request's task type among
              deployments meeting ``min_success_rate``, exploring a bounded share by
              Thompson sampling (policies/cost_per_success.py)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from random import Random
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol, Sequence

from policies.cost_per_success import ArmStats, Params, choose
from policies.schema import ModelRouting
from policies.verdicts import Consideration, Denial, excluded
from providers.base import Deployment

PICO = Decimal(10) ** 12


class PriceLike(Protocol):
    """USD per token, like :class:`gateway.accounting.pricing.Price`."""

    @property
    def input(self) -> Decimal: ...

    @property
    def output(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class LatencySample:
    latency_s: float  # the whole attempt
    ttft_s: float | None = None  # to the first token, for streams


@dataclass(frozen=True, slots=True)
class LatencyStats:
    latency_s: float | None = None  # EWMA
    ttft_s: float | None = None  # EWMA
    samples: int = 0


def update_ewma(stats: LatencyStats | None, sample: LatencySample, alpha: float) -> LatencyStats:
    """new = alpha * sample + (1 - alpha) * old; the first sample is taken as is."""
    old = stats or LatencyStats()

    def mix(prev: float | None, new: float | None) -> float | None:
        if new is None:
            return prev
        return new if prev is None else alpha * new + (1 - alpha) * prev

    return LatencyStats(mix(old.latency_s, sample.latency_s), mix(old.ttft_s, sample.ttft_s), old.samples + 1)


@dataclass(frozen=True, slots=True)
class StrategyInputs:
    model: str = ""  # the public model, for rule names
    rand: float = 0.0  # uniform in [0, 1), for ``weighted``
    latency: Mapping[str, LatencyStats] = field(default_factory=lambda: MappingProxyType({}))
    prices: Mapping[str, PriceLike | None] = field(default_factory=lambda: MappingProxyType({}))
    prompt_tokens: int = 0
    output_tokens: int = 0  # max_tokens, else the assumed output
    stream: bool = False
    budget_remaining_picousd: int | None = None  # None: the task has no budget
    # cost_per_success: the request's task type's outcomes by deployment id, and the random source
    # (None: a Random seeded with ``rand``, so the decision still follows from its inputs)
    outcomes: Mapping[str, ArmStats] = field(default_factory=lambda: MappingProxyType({}))
    rng: Random | None = None
    task_type: str = "default"
    lite: bool = False  # the reasons (``Ordering.why``) are not wanted: only explain shows them


@dataclass(frozen=True, slots=True)
class Ordering:
    ordered: tuple[Deployment, ...]
    why: Mapping[str, str]  # deployment id -> why it sits where it does
    dropped: tuple[Consideration, ...] = ()
    denial: Denial | None = None
    detail: Mapping[str, Any] | None = None  # the numbers behind the order, for explain (JSON-ready)


def worst_case_picousd(price: PriceLike, prompt_tokens: int, output_tokens: int) -> int:
    usd = prompt_tokens * Decimal(price.input) + output_tokens * Decimal(price.output)
    return int((usd * PICO).to_integral_value(ROUND_CEILING))


def usd(picousd: int) -> str:
    return f"${Decimal(picousd) / PICO:.6f}"


def _priority(deps: Sequence[Deployment], mr: ModelRouting, inp: StrategyInputs) -> Ordering:
    if inp.lite:
        return Ordering(tuple(deps), _NO_WHY)
    return Ordering(tuple(deps), {d.id: f"model_list position {i + 1}" for i, d in enumerate(deps)})


def _weighted(deps: Sequence[Deployment], mr: ModelRouting, inp: StrategyInputs) -> Ordering:
    weights = mr.weights or {}
    pool = [(d, weights[d.id]) for d in deps if weights.get(d.id, 0) > 0]
    total_all = sum(w for _, w in pool)
    why = {d.id: f"weight {w:g} of {total_all:g}" for d, w in pool}
    r, out = min(max(inp.rand, 0.0), 1.0 - 1e-12), []
    while pool:  # draw without replacement; the rest of r is the next uniform draw
        x, acc = r * sum(w for _, w in pool), 0.0
        for idx, (dep, w) in enumerate(pool):
            if x < acc + w or idx == len(pool) - 1:
                r = min(max((x - acc) / w, 0.0), 1.0 - 1e-12)
                out.append(dep)
                pool.pop(idx)
                break
            acc += w
    rest = [d for d in deps if weights.get(d.id, 0) <= 0]
    why.update({d.id: "weight 0: fallback only" for d in rest})
    return Ordering(tuple(out + rest), why)


def _latency(deps: Sequence[Deployment], mr: ModelRouting, inp: StrategyInputs) -> Ordering:
    latency, stream = inp.latency, inp.stream

    def score(d: Deployment) -> tuple[int, float]:
        s = latency.get(d.id)
        if s is None or s.samples == 0 or s.latency_s is None:
            return (0, 0.0)  # explore first
        if stream and s.ttft_s is not None:
            return (1, s.ttft_s)
        return (2, s.latency_s)

    scores = [(score(d), d) for d in deps]  # each once: this runs on every request
    ordered = [d for _, d in sorted(scores, key=lambda pair: pair[0])]  # stable: ties keep model_list order
    if inp.lite:
        return Ordering(tuple(ordered), _NO_WHY)
    return Ordering(tuple(ordered), {d.id: _LATENCY_LABELS[kind].format(value) for (kind, value), d in scores})


_NO_WHY: Mapping[str, str] = MappingProxyType({})
_LATENCY_LABELS = {0: "no latency sample yet: explored", 1: "EWMA time to first token {:.3f}s",
                   2: "EWMA latency {:.3f}s"}


def _cost(deps: Sequence[Deployment], mr: ModelRouting, inp: StrategyInputs) -> Ordering:
    costs = {d.id: _expected(d, inp) for d in deps}
    ordered = sorted(deps, key=lambda d: (costs[d.id] is None, costs[d.id] or 0))
    why = {d.id: "unpriced: tried last" if c is None else f"expected cost {usd(c)}" for d in deps
           for c in [costs[d.id]]}
    return Ordering(tuple(ordered), why)


def _expected(dep: Deployment, inp: StrategyInputs) -> int | None:
    price = inp.prices.get(dep.id)
    return None if price is None else worst_case_picousd(price, inp.prompt_tokens, inp.output_tokens)


def _budget(deps: Sequence[Deployment], mr: ModelRouting, inp: StrategyInputs) -> Ordering:
    where = f"routing.models.{inp.model}"
    by_id = {d.id: d for d in deps}
    listed = {d for tier in mr.tiers or () for d in tier}
    tiers = [[by_id[i] for i in tier if i in by_id] for tier in mr.tiers or ()]
    tiers.append([d for d in deps if d.id not in listed])
    tiers = [t for t in tiers if t]
    remaining = inp.budget_remaining_picousd
    dropped: list[Consideration] = []
    low = None if mr.low_budget_usd is None else int(mr.low_budget_usd * PICO)
    if remaining is not None and low is not None and remaining < low and len(tiers) > 1:
        dropped += [excluded(d.id, f"{where}.low_budget_usd", f"remaining budget {usd(remaining)} is below "
                             f"{usd(low)}: stepped down from the first tier") for d in tiers[0]]
        tiers = tiers[1:]
    out, why = [], {}
    for t, tier in enumerate(tiers):
        for dep in tier:
            cost = _expected(dep, inp)
            if remaining is not None and cost is None:
                dropped.append(excluded(dep.id, f"{where}.tiers", "unpriced: cannot check that it fits the budget"))
            elif remaining is not None and cost is not None and cost > remaining:
                dropped.append(excluded(dep.id, f"{where}.tiers",
                                        f"worst case {usd(cost)} exceeds the remaining budget {usd(remaining)}"))
            else:
                out.append(dep)
                why[dep.id] = f"budget tier {t + 1}" + ("" if cost is None else f", worst case {usd(cost)}")
    denial = None
    if not out and remaining is not None:
        denial = Denial(429, "budget_exceeded", f"the task's remaining budget {usd(remaining)} does not cover "
                        "the worst-case cost of any deployment it may use", f"{where}.tiers")
    return Ordering(tuple(out), why, tuple(dropped), denial)


def _cost_per_success(deps: Sequence[Deployment], mr: ModelRouting, inp: StrategyInputs) -> Ordering:
    if not deps:
        return Ordering((), {})
    params = Params(mr.cps("min_success_rate"), mr.cps("explore_share"), int(mr.cps("min_samples")))
    choice = choose([d.id for d in deps], inp.outcomes, params, inp.rng or Random(inp.rand), inp.task_type)
    by_id = {d.id: d for d in deps}
    return Ordering(tuple(by_id[i] for i in choice.order), choice.why, detail=choice.detail)


STRATEGIES: Mapping[str, Callable[[Sequence[Deployment], ModelRouting, StrategyInputs], Ordering]] = {
    "priority": _priority,
    "weighted": _weighted,
    "latency": _latency,
    "cost": _cost,
    "budget": _budget,
    "cost_per_success": _cost_per_success,
}


def order(settings: ModelRouting, deployments: Sequence[Deployment], inputs: StrategyInputs) -> Ordering:
    """The deployments in the order to try them, by ``settings.strategy``."""
    result = STRATEGIES[settings.strategy](deployments, settings, inputs)
    # (built directly: dataclasses.replace costs more than the strategy itself)
    return Ordering(result.ordered, MappingProxyType(dict(result.why)), result.dropped, result.denial, result.detail)
