"""The ``cost_per_success`` strategy: the deployment that finishes a job for the least (pure).

The gateway keeps, per tenant, public model, task type and deployment, the decayed
count of jobs (ended tasks) attributed to that deployment, how many of them succeeded
and what they cost in total (see docs/OUTCOME-ATTRIBUTION.md). This module turns those
numbers into an order, with no I/O: the random draws come from the ``rng`` passed in,
so a seeded ``random.Random`` makes every decision reproducible.

    exploit (probability 1 - explore_share)
        arms with at least ``min_samples`` jobs whose observed success rate meets
        ``min_success_rate``, by lowest observed cost per succeeded job
        (total cost / successes); then arms with too few jobs, in the configured
        order; then arms below the minimum rate, best rate first. With no arm that
        qualifies, this is the configured order for the under-sampled arms.
    explore (probability explore_share)
        an arm with fewer than ``min_samples`` jobs, the fewest first, so that a new
        or neglected deployment gets samples; when every arm has enough, Thompson
        sampling: p ~ Beta(successes + 1, failures + 1), cost per job ~ mean x
        Gamma(n, 1/n) (mean 1, spread 1/sqrt(n)), and the lowest sampled cost per
        success (cost / p) among arms whose sampled p meets ``min_success_rate``
        (else the highest sampled p).

The rest of the order, after the first choice, is the exploit order: fallbacks go to
what the numbers say is next best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from random import Random
from typing import Any, Iterator, Mapping, Sequence

PICO = Decimal(10) ** 12
INF = math.inf


@dataclass(frozen=True, slots=True)
class ArmStats:
    """One deployment's ended jobs for one task type (decayed, so counts may be fractional)."""

    jobs: float = 0.0
    successes: float = 0.0
    cost_picousd: int = 0  # the decayed total cost of those jobs

    @property
    def success_rate(self) -> float | None:
        return None if self.jobs <= 0 else min(1.0, self.successes / self.jobs)

    @property
    def cost_per_job(self) -> float | None:
        return None if self.jobs <= 0 else self.cost_picousd / self.jobs

    @property
    def cost_per_success(self) -> float | None:
        """Total cost over successes: failed and abandoned jobs are spread over the successes."""
        if self.jobs <= 0:
            return None
        return INF if self.successes <= 0 else self.cost_picousd / self.successes


@dataclass(frozen=True, slots=True)
class Params:
    min_success_rate: float = 0.0
    explore_share: float = 0.1
    min_samples: int = 10


@dataclass(frozen=True, slots=True)
class Choice:
    order: tuple[str, ...]  # deployment ids, the first is the choice
    why: Mapping[str, str]
    explored: bool
    reason: str
    detail: Mapping[str, Any]  # JSON-ready: the numbers behind the choice, for explain


def _usd(picousd: float | None) -> str | None:
    if picousd is None:
        return None
    if picousd == INF:
        return "inf"
    return f"{Decimal(round(picousd)) / PICO:.6f}"


def choose(ids: Sequence[str], stats: Mapping[str, ArmStats], params: Params, rng: Random,
           task_type: str = "default") -> Choice:
    """The order of ``ids`` (given in the configured order; never empty) by cost per success."""
    empty = ArmStats()
    arm = {i: stats.get(i, empty) for i in ids}
    enough = {i: arm[i].jobs >= params.min_samples for i in ids}
    meets = {i: (arm[i].success_rate or 0.0) >= params.min_success_rate for i in ids}
    position = {i: n for n, i in enumerate(ids)}

    qualified = sorted((i for i in ids if enough[i] and meets[i]),
                       key=lambda i: (arm[i].cost_per_success or 0.0, position[i]))
    under = [i for i in ids if not enough[i]]
    below = sorted((i for i in ids if enough[i] and not meets[i]),
                   key=lambda i: (-(arm[i].success_rate or 0.0), position[i]))
    exploit = qualified + under + below

    explored = rng.random() < params.explore_share
    sampled: dict[str, dict[str, float]] = {}
    if not explored:
        first = exploit[0]
        if qualified:
            reason = "lowest observed cost per succeeded job among deployments that meet min_success_rate"
        elif below and not under:
            reason = "no deployment meets min_success_rate: the highest success rate"
        elif len(under) < len(ids):
            reason = "no deployment with min_samples jobs meets min_success_rate: under-sampled ones first, " \
                     "in the configured order"
        else:
            reason = f"fewer than min_samples ({params.min_samples}) jobs everywhere: the configured order"
    elif under:
        first = min(under, key=lambda i: (arm[i].jobs, position[i]))
        reason = f"exploring: fewer than min_samples ({params.min_samples}) jobs, the fewest first"
    else:
        for i in ids:
            a = arm[i]
            p = rng.betavariate(a.successes + 1.0, max(a.jobs - a.successes, 0.0) + 1.0)
            per_job = (a.cost_per_job or 0.0) * rng.gammavariate(a.jobs, 1.0 / a.jobs)
            sampled[i] = {"success_rate": p, "cost_per_job": per_job, "cost_per_success": per_job / p}
        fit = [i for i in ids if sampled[i]["success_rate"] >= params.min_success_rate]
        if fit:
            first = min(fit, key=lambda i: (sampled[i]["cost_per_success"], position[i]))
            reason = "exploring (Thompson sampling): lowest sampled cost per success"
        else:
            first = max(ids, key=lambda i: (sampled[i]["success_rate"], -position[i]))
            reason = "exploring (Thompson sampling): no sampled success rate meets min_success_rate; the highest"
    order = (first, *(i for i in exploit if i != first))
    why: dict[str, str] = {}
    for i in ids:
        a = arm[i]
        if not enough[i]:
            why[i] = f"{a.jobs:.1f} of min_samples {params.min_samples} jobs"
        elif not meets[i]:
            why[i] = f"success rate {a.success_rate:.0%} below min_success_rate {params.min_success_rate:.0%}"
        else:
            why[i] = (f"cost per success ${(a.cost_per_success or 0.0) / 1e12:.6f} "
                      f"(success rate {a.success_rate:.0%}, {a.jobs:.1f} jobs)")
    why[first] = ("explored: " if explored else "") + why[first]
    return Choice(order, why, explored, reason, Detail(ids, arm, enough, meets, sampled, params, first, explored,
                                                      reason, task_type))


class Detail(Mapping[str, Any]):
    """The numbers behind a choice, JSON-ready; built only when read (explain), not per request."""

    def __init__(self, ids: Sequence[str], arm: Mapping[str, ArmStats], enough: Mapping[str, bool],
                 meets: Mapping[str, bool], sampled: Mapping[str, Mapping[str, float]], params: Params, first: str,
                 explored: bool, reason: str, task_type: str) -> None:
        self._args = (ids, arm, enough, meets, sampled, params, first, explored, reason, task_type)
        self._built: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        if self._built is None:
            self._built = _detail(*self._args)
        return self._built

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _detail(ids: Sequence[str], arm: Mapping[str, ArmStats], enough: Mapping[str, bool], meets: Mapping[str, bool],
            sampled: Mapping[str, Mapping[str, float]], params: Params, first: str, explored: bool, reason: str,
            task_type: str) -> dict[str, Any]:
    arms: list[dict[str, Any]] = []
    for i in ids:
        a = arm[i]
        rate = a.success_rate
        entry: dict[str, Any] = {
            "deployment": i, "jobs": round(a.jobs, 3), "successes": round(a.successes, 3),
            "success_rate": None if rate is None else round(rate, 4),
            "cost_per_job_usd": _usd(a.cost_per_job), "cost_per_success_usd": _usd(a.cost_per_success),
            "samples": math.floor(a.jobs), "enough_samples": enough[i], "meets_min_success_rate": meets[i],
        }
        if i in sampled:
            s = sampled[i]
            entry["sampled"] = {"success_rate": round(s["success_rate"], 4),
                                "cost_per_job_usd": _usd(s["cost_per_job"]),
                                "cost_per_success_usd": _usd(s["cost_per_success"])}
        arms.append(entry)
    return {"task_type": task_type, "chosen": first, "explored": explored, "reason": reason,
            "min_success_rate": params.min_success_rate, "explore_share": params.explore_share,
            "min_samples": params.min_samples, "arms": arms}
