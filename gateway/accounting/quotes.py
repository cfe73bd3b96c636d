"""Quotes and reports by model path: statistics over ended tasks (pure functions).

A *sample* is one ended task: its cost (integer pico-dollars), its outcome
(``succeeded``, ``failed`` or ``abandoned``), its model path and its tokens.

**Model path.** The sorted, distinct ``<public model>@<deployment>`` pairs that the
task's attempts went through, joined by ``" + "`` (for example
``"triage@small-oss"`` or ``"triage@small-oss + triage@frontier"`` when a task fell back
or was retried elsewhere). A task with no attempt has the path ``"(none)"``.

**The statistic.** The expected cost per succeeded job is the cost of *every* ended
job (succeeded, failed, abandoned) divided by the number that succeeded. Its
uncertainty is a percentile bootstrap interval: with ``rng = random.Random(seed)``,
each of ``resamples`` resamples is ``rng.choices(samples, k=n)`` over the samples in
the order given (oldest first), and its statistic is ``sum(cost) // successes``
(pico-dollars; a resample with no success counts as infinite). The interval is the
``(1-confidence)/2`` and ``(1+confidence)/2`` nearest-rank percentiles of the sorted
resample statistics. Percentiles of the cost of one job are nearest-rank too:
the ``ceil(p * n)``-th smallest cost.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Iterable, Sequence

from gateway.accounting.pricing import PICO, format_usd

NO_PATH = "(none)"
INFINITE = -1  # a resample without a success


@dataclass(frozen=True, slots=True)
class Sample:
    cost_picousd: int
    outcome: str
    model_path: str
    tokens: int = 0  # input + output tokens of the whole task


@dataclass(frozen=True, slots=True)
class QuoteSettings:
    margin: Decimal
    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 15
    min_ended: int = 20
    min_succeeded: int = 5


def model_path(pairs: Iterable[tuple[str | None, str]]) -> str:
    """The model path of a task from its (public model, deployment) pairs."""
    distinct = sorted({f"{model or '?'}@{deployment}" for model, deployment in pairs})
    return " + ".join(distinct) if distinct else NO_PATH


def nearest_rank(ordered: Sequence[int], p: float) -> int:
    """The ``ceil(p * n)``-th smallest value (``ordered`` sorted ascending, not empty)."""
    return ordered[min(len(ordered), max(1, math.ceil(p * len(ordered)))) - 1]


def bootstrap_cps(samples: Sequence[Sample], resamples: int, seed: int) -> list[int]:
    """The sorted resample statistics of cost per success (pico-dollars; INFINITE sorts last)."""
    n = len(samples)
    if not n:
        return []
    # one integer per sample, cost * M + success: a resample's sum carries both totals (M > n)
    m = 1 << max(20, n.bit_length() + 1)
    values = [s.cost_picousd * m + (s.outcome == "succeeded") for s in samples]
    rng = random.Random(seed)
    stats: list[int] = []
    for _ in range(resamples):
        cost, succeeded = divmod(sum(rng.choices(values, k=n)), m)
        stats.append(cost // succeeded if succeeded else INFINITE)
    finite = sorted(v for v in stats if v != INFINITE)
    return finite + [INFINITE] * (len(stats) - len(finite))


def usd_quotient(picousd: int, n: int) -> str | None:
    """``picousd / n`` in USD as an exact decimal string (18 places, half-even beyond)."""
    if not n:
        return None
    text = format((Decimal(picousd) / PICO / n).quantize(Decimal("1e-18")).normalize(), "f")
    return text if "." in text else text + ".0"


def price_at(cost_per_success: Decimal, margin: Decimal) -> str:
    """The price per job that leaves ``margin`` of it over cost: cost / (1 - margin), in USD,
    rounded up to a pico-dollar."""
    return format_usd(int((cost_per_success * PICO / (1 - margin)).to_integral_value(ROUND_CEILING)))


def _usd(picousd: int | None) -> str | None:
    return None if picousd is None else format_usd(picousd)


def counts(samples: Sequence[Sample]) -> tuple[int, int, int]:
    """(ended, succeeded, total cost in pico-dollars)."""
    return (len(samples), sum(1 for s in samples if s.outcome == "succeeded"),
            sum(s.cost_picousd for s in samples))


def quote(samples: Sequence[Sample], settings: QuoteSettings) -> dict[str, Any]:
    """The quote JSON for one task type's ended tasks (oldest first)."""
    n, succeeded, total = counts(samples)
    enough = n >= settings.min_ended and succeeded >= settings.min_succeeded
    costs = sorted(s.cost_picousd for s in samples)
    stats = bootstrap_cps(samples, settings.resamples, settings.seed) if n else []
    alpha = 1 - settings.confidence
    low = nearest_rank(stats, alpha / 2) if stats else INFINITE
    high = nearest_rank(stats, 1 - alpha / 2) if stats else INFINITE
    cps = Decimal(total) / PICO / succeeded if succeeded else None
    point = usd_quotient(total, succeeded) if enough else None
    out: dict[str, Any] = {
        "object": "quote",
        "enough_history": enough,
        "sample": {"ended": n, "succeeded": succeeded,
                   "failed": sum(1 for s in samples if s.outcome == "failed"),
                   "abandoned": sum(1 for s in samples if s.outcome == "abandoned")},
        "success_rate": succeeded / n if n else None,
        "total_cost_usd": format_usd(total),
        "expected_cost_per_success_usd": point,
        # what the history says even when it is too short to quote on: for display, never for pricing
        "observed_cost_per_success_usd": usd_quotient(total, succeeded),
        "interval": {
            "method": "percentile bootstrap",
            "confidence": settings.confidence,
            "resamples": settings.resamples,
            "seed": settings.seed,
            "low_usd": _usd(low) if low != INFINITE else None,
            "high_usd": _usd(high) if high != INFINITE else None,  # null: unbounded (too few successes)
        },
        "cost_per_job_usd": {name: (_usd(nearest_rank(costs, p)) if costs else None)
                             for name, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
        "margin": format(settings.margin, "f"),
        "suggested_price_usd": price_at(cps, settings.margin) if enough and cps is not None else None,
        "suggested_price_upper_usd": (price_at(Decimal(high) / PICO, settings.margin)
                                      if enough and high != INFINITE else None),
        "by_model_path": by_model_path(samples),
    }
    if not enough:
        out["reason"] = (f"not enough history: {n} ended task(s) and {succeeded} success(es); a quote needs "
                         f"at least {settings.min_ended} ended and {settings.min_succeeded} succeeded")
    return out


def by_model_path(samples: Sequence[Sample], price: Decimal | None = None) -> list[dict[str, Any]]:
    """One row per model path: jobs, success rate, cost and tokens per succeeded job, and the
    margin per succeeded job at ``price`` (revenue of the successes less the cost of every job)."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.model_path, []).append(s)
    rows = []
    for path, group in groups.items():
        n, succeeded, total = counts(group)
        tokens = sum(s.tokens for s in group)
        row: dict[str, Any] = {
            "model_path": path, "jobs": n, "succeeded": succeeded,
            "success_rate": succeeded / n if n else None,
            "cost_usd": format_usd(total),
            "cost_per_succeeded_job_usd": usd_quotient(total, succeeded),
            "tokens_per_succeeded_job": (tokens / succeeded) if succeeded else None,
        }
        if price is not None:
            margin = int(price * PICO) * succeeded - total
            row["price_usd"] = format(price.normalize(), "f")
            row["margin_usd"] = format_usd(margin)
            row["margin_per_succeeded_job_usd"] = usd_quotient(margin, succeeded)
            row["margin_ratio"] = (float(margin / (int(price * PICO) * succeeded))
                                   if succeeded and price > 0 else None)
        rows.append(row)
    rows.sort(key=lambda r: (r["cost_per_succeeded_job_usd"] is None,
                             Decimal(r["cost_per_succeeded_job_usd"] or 0), r["model_path"]))
    return rows
