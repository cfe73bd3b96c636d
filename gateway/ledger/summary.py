"""Turning ledger hashes into the JSON the API returns (pure functions)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any, Iterable, Mapping

from gateway.accounting.pricing import PICO, format_usd, usd

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")
WASTE_REASONS = ("retry", "fallback", "cancelled", "interrupted", "failed")


def money(picousd: int) -> float:
    """A JSON number in USD (12 decimals). The exact integer is given beside it."""
    return float(usd(picousd))


def exact(picousd: int) -> str:
    """The exact twin of a money field: USD as a decimal string (up to 12 places, no exponent)."""
    return format_usd(picousd)


def exact_price(price: Decimal) -> str:
    """A configured price (Decimal USD) as an exact decimal string."""
    text = format(price.normalize(), "f")
    return text if "." in text else text + ".0"


def _int(h: Mapping[str, str], key: str) -> int:
    value = h.get(key)
    return int(value) if value else 0


def task_summary(h: Mapping[str, str], price_usd: Decimal | None = None) -> dict[str, Any]:
    """The contract's task JSON from a task hash (decoded to str)."""
    cost = _int(h, "cost_pusd")
    models: dict[str, dict[str, Any]] = {}
    for key, value in h.items():
        if not key.startswith("d:"):
            continue
        deployment, _, field = key[2:].rpartition(":")
        entry = models.setdefault(deployment, {"deployment": deployment})
        if field in ("model", "provider"):
            entry[field] = value
        else:
            entry[field] = int(value)
    breakdown = []
    for entry in sorted(models.values(), key=lambda e: -e.get("cost_pusd", 0)):
        row = {"model": entry.get("model"), "deployment": entry["deployment"], "provider": entry.get("provider"),
               "attempts": entry.get("attempts", 0)}
        row.update({f: entry.get(f, 0) for f in TOKEN_FIELDS})
        row["cost_usd"] = money(entry.get("cost_pusd", 0))
        row["cost_picousd"] = entry.get("cost_pusd", 0)
        row["cost_usd_exact"] = exact(row["cost_picousd"])
        breakdown.append(row)
    waste_pico = {reason: _int(h, f"waste:{reason}") for reason in WASTE_REASONS}
    waste = {reason: money(v) for reason, v in waste_pico.items()}
    status = h.get("status", "open")
    out: dict[str, Any] = {
        "object": "task",
        "task_id": h.get("task_id"),
        "task_type": h.get("task_type"),
        "status": status,
        "created_at": float(h.get("created_at", 0)),
        "updated_at": float(h.get("updated_at", 0)),
        "ended_at": float(h["ended_at"]) if h.get("ended_at") else None,
        "requests": _int(h, "requests"),
        "attempts": _int(h, "attempts"),
        "failed_attempts": _int(h, "failed_attempts"),
        **{f: _int(h, f) for f in TOKEN_FIELDS},
        "cost_usd": money(cost),
        "cost_picousd": cost,
        "cost_usd_exact": exact(cost),
        "waste_usd": money(_int(h, "waste_pusd")),
        "waste_picousd": _int(h, "waste_pusd"),
        "waste_by_reason": waste,
        "waste_by_reason_picousd": waste_pico,
        "waste_usd_exact": exact(_int(h, "waste_pusd")),
        "unpriced_attempts": _int(h, "unpriced"),
        "estimated_attempts": _int(h, "estimated"),
        "reserved_picousd": _int(h, "reserved_pusd"),  # held by requests in flight (released by their final record)
        # complete: every attempt priced from the provider's own usage (no unpriced, no estimated attempt)
        "cost_complete": _int(h, "unpriced") == 0 and _int(h, "estimated") == 0,
        "budget_usd": money(_int(h, "budget_pusd")) if h.get("budget_pusd") else None,
        "budget_picousd": _int(h, "budget_pusd") if h.get("budget_pusd") else None,
        "models": breakdown,
        # who acted (the key that started the task): a person's key, or an agent acting for one
        "key_id": h.get("key_id"),
        "actor": h.get("actor", "human"),
        "agent": h.get("agent"),
        "person": h.get("person") or (h.get("key_id") if h.get("actor", "human") == "human" else None),
    }
    if price_usd is not None:
        margin = int(price_usd * PICO) - cost if status == "succeeded" else -cost
        out["price_usd"] = float(price_usd)
        out["price_usd_exact"] = exact_price(price_usd)
        out["margin_usd"] = float(price_usd - usd(cost)) if status == "succeeded" else float(-usd(cost))
        out["margin_picousd"] = margin
        out["margin_usd_exact"] = exact(margin)
    return out


def report_rows(aggs: Iterable[Mapping[str, str]], prices: Mapping[str, Decimal | None]) -> list[dict[str, Any]]:
    """Per task type over a period, from daily aggregate hashes.

    Cost per succeeded task divides the cost of *every* ended task of the type
    (succeeded, failed, abandoned) by the number that succeeded: failures are
    part of what a success really costs.
    """
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for agg in aggs:
        for key, value in agg.items():
            ttype, outcome, field = key.split("|", 2)
            totals[ttype][f"{outcome}|{field}"] += int(value)
    rows = []
    for ttype, t in sorted(totals.items()):
        by = {o: t.get(f"{o}|tasks", 0) for o in ("succeeded", "failed", "abandoned")}
        cost = {o: t.get(f"{o}|cost_pusd", 0) for o in by}
        ended = sum(by.values())
        total_cost = sum(cost.values())
        # retries and fallbacks inside failed or abandoned tasks are already in those tasks' cost
        waste = {r: t.get(f"succeeded|waste:{r}", 0) for r in WASTE_REASONS}
        waste["failed_task"] = cost["failed"]
        waste["abandoned_task"] = cost["abandoned"]
        price = prices.get(ttype)
        row: dict[str, Any] = {
            "task_type": ttype,
            "tasks": ended,
            **{o: n for o, n in by.items()},
            "success_rate": (by["succeeded"] / ended) if ended else None,
            "requests": sum(t.get(f"{o}|requests", 0) for o in by),
            "attempts": sum(t.get(f"{o}|attempts", 0) for o in by),
            "input_tokens": sum(t.get(f"{o}|input_tokens", 0) for o in by),
            "output_tokens": sum(t.get(f"{o}|output_tokens", 0) for o in by),
            "cost_usd": money(total_cost),
            "cost_picousd": total_cost,
            "cost_usd_exact": exact(total_cost),
            # exact twin: the exact quotient, as a decimal string (the float field rounds it down to a pico-dollar)
            "cost_per_succeeded_task_usd": money(total_cost // by["succeeded"]) if by["succeeded"] else None,
            "cost_per_succeeded_task_usd_exact": _quotient(total_cost, by["succeeded"]),
            "waste_usd": {r: money(v) for r, v in waste.items()},
            "waste_picousd": waste,
            "waste_usd_exact": {r: exact(v) for r, v in waste.items()},
            "waste_ratio": (sum(waste.values()) / total_cost) if total_cost else None,
            "unpriced_attempts": sum(t.get(f"{o}|unpriced", 0) for o in by),
            "estimated_attempts": sum(t.get(f"{o}|estimated", 0) for o in by),
        }
        row["cost_complete"] = row["unpriced_attempts"] == 0 and row["estimated_attempts"] == 0
        if price is not None:
            revenue = int(price * PICO) * by["succeeded"]
            row["price_usd"] = float(price)
            row["price_usd_exact"] = exact_price(price)
            row["revenue_usd"] = money(revenue)
            row["revenue_picousd"] = revenue
            row["revenue_usd_exact"] = exact(revenue)
            row["margin_usd"] = money(revenue - total_cost)
            row["margin_picousd"] = revenue - total_cost
            row["margin_usd_exact"] = exact(revenue - total_cost)
            row["margin_per_succeeded_task_usd"] = (
                money((revenue - total_cost) // by["succeeded"]) if by["succeeded"] else None)
            row["margin_per_succeeded_task_usd_exact"] = _quotient(revenue - total_cost, by["succeeded"])
        rows.append(row)
    return rows


def _quotient(picousd: int, n: int) -> str | None:
    """``picousd / n`` in USD, exact to 18 places (rounded half-even beyond), as a decimal string."""
    if not n:
        return None
    text = format((Decimal(picousd) / PICO / n).quantize(Decimal("1e-18")).normalize(), "f")
    return text if "." in text else text + ".0"


def actor_rows(aggs: Iterable[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Per person key and per agent over a period, from the daily ``aggw`` hashes (fields
    ``<who>|<outcome>|<field>``, who = ``<person key id>`` or ``<person key id>/<agent>``, ``-``
    for a key from the config). Cost per succeeded task: every ended task's cost over the successes."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for agg in aggs:
        for key, value in agg.items():
            who, outcome, field = key.split("|", 2)
            totals[who][f"{outcome}|{field}"] += int(value)
    rows = []
    for who, t in sorted(totals.items()):
        person, _, agent = who.partition("/")
        by = {o: t.get(f"{o}|tasks", 0) for o in ("succeeded", "failed", "abandoned")}
        cost = sum(t.get(f"{o}|cost_pusd", 0) for o in by)
        rows.append({
            "actor": "agent" if agent else "human", "person": None if person == "-" else person,
            "agent": agent or None, "tasks": sum(by.values()), **by, "cost_usd": money(cost), "cost_picousd": cost,
            "cost_usd_exact": exact(cost),
            "cost_per_succeeded_task_usd": money(cost // by["succeeded"]) if by["succeeded"] else None,
            "cost_per_succeeded_task_usd_exact": exact(cost // by["succeeded"]) if by["succeeded"] else None,
        })
    return rows
