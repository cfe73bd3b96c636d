"""The ledger against a real Redis, in-process: records, idempotency, ending, sweeping, budgets, exact sums."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from gateway.accounting.metrics import Metrics
from gateway.accounting.pricing import PICO
from gateway.accounting.records import AttemptRecord
from gateway.config.load import parse
from gateway.errors import Conflict, NotFound, RateLimited
from gateway.ledger.ledger import Ledger, period_of
from gateway.snapshot import CurrentSnapshot, build_snapshot
from gateway.store.embedded import connect
from providers.base import Usage


@pytest.fixture
async def ledger(redis_server: Any, tmp_path: Path) -> AsyncIterator[Ledger]:
    url = redis_server.url.rsplit("/", 1)[0] + "/3"  # a DB of its own
    config = parse(f"""
store: {{url: "{url}", spool_dir: "{tmp_path / 'spool'}"}}
tasks:
  idle_timeout_s: 60
  sweep_interval_s: 3600
  types:
    triage: {{price_usd: 0.05, budget_usd: 0.001}}
budgets:
  tenants:
    capped: {{daily_usd: 0.002}}
""", "test.yaml", {})
    async with running_ledger(url, config) as led:
        yield led


@asynccontextmanager
async def running_ledger(url: str, config: Any) -> AsyncIterator[Ledger]:
    """A started ledger on an emptied Redis DB, for one parsed config; stopped and closed after."""
    redis = connect(url)
    await redis.flushdb()
    led = Ledger(redis, CurrentSnapshot(build_snapshot(config, {})), Metrics())
    await led.start()
    try:
        yield led
    finally:
        await led.stop()
        await redis.aclose()


def rec(task: str = "t1", *, tenant: str = "acme", request: str | None = None, attempt: int = 0,
        usage: Usage | None = Usage(10, 5), cost: int | None = 1000, **kw: Any) -> AttemptRecord:
    fields: dict[str, Any] = dict(
        request_id=request or uuid.uuid4().hex, attempt=attempt, task_id=task, task_type="triage", tenant=tenant,
        operation="chat", model="m", deployment="dep-a", provider="openai", outcome="ok", status=200,
        error_reason=None, usage=usage, usage_source="provider" if usage else "none", cost_picousd=cost,
        started_at=time.time(), duration_s=0.01)
    fields.update(kw)
    return AttemptRecord(**fields)


async def test_records_sum_per_task_with_breakdown(ledger: Ledger) -> None:
    ledger.record(rec(cost=1000))
    ledger.record(rec(cost=2500, deployment="dep-b", provider="bedrock", usage=Usage(7, 3, cached_input_tokens=2)))
    task = await ledger.get("acme", "t1")
    assert (task["status"], task["requests"], task["attempts"]) == ("open", 2, 2)
    assert (task["input_tokens"], task["output_tokens"], task["cached_input_tokens"]) == (17, 8, 2)
    assert task["cost_picousd"] == 3500 and task["cost_usd"] == pytest.approx(3.5e-9)
    assert {m["deployment"]: m["cost_picousd"] for m in task["models"]} == {"dep-a": 1000, "dep-b": 2500}


async def test_a_replayed_record_is_counted_once(ledger: Ledger) -> None:
    r = rec(request="req-1")
    for _ in range(3):
        ledger.record(r)
    ledger.record(rec(request="req-1", attempt=1, cost=7, final=False))
    task = await ledger.get("acme", "t1")
    assert (task["requests"], task["attempts"], task["cost_picousd"]) == (1, 2, 1007)


async def test_waste_unpriced_and_estimated(ledger: Ledger) -> None:
    ledger.record(rec(request="r", attempt=0, outcome="error", cost=300, waste_reason="retry", final=False))
    ledger.record(rec(request="r", attempt=1, outcome="error", cost=200, waste_reason="fallback", final=False))
    ledger.record(rec(request="r", attempt=2, cost=None))
    ledger.record(rec(request="s", cost=50, usage_source="estimated", outcome="cancelled", waste_reason="cancelled"))
    task = await ledger.get("acme", "t1")
    assert task["waste_by_reason"] == {"retry": pytest.approx(3e-10), "fallback": pytest.approx(2e-10),
                                       "cancelled": pytest.approx(5e-11), "interrupted": 0, "failed": 0}
    assert task["waste_by_reason_picousd"] == {"retry": 300, "fallback": 200, "cancelled": 50, "interrupted": 0,
                                               "failed": 0}
    assert (task["unpriced_attempts"], task["estimated_attempts"], task["cost_complete"]) == (1, 1, False)
    records = await ledger.attempts("acme", "t1")
    assert [r["cost_source"] for r in records] == ["computed", "computed", "unpriced", "estimated"]


async def test_complete_is_idempotent_and_conflicts_on_a_different_outcome(ledger: Ledger) -> None:
    ledger.record(rec())
    done = await ledger.complete("acme", "t1", "succeeded")
    assert done["status"] == "succeeded" and done["ended_at"]
    assert (await ledger.complete("acme", "t1", "succeeded"))["status"] == "succeeded"
    with pytest.raises(Conflict):
        await ledger.complete("acme", "t1", "failed")
    with pytest.raises(NotFound):
        await ledger.complete("acme", "never-seen", "succeeded")


async def test_tenants_are_isolated(ledger: Ledger) -> None:
    ledger.record(rec(tenant="a", task="shared-id", cost=1))
    ledger.record(rec(tenant="b", task="shared-id", cost=2))
    assert (await ledger.get("a", "shared-id"))["cost_picousd"] == 1
    assert (await ledger.get("b", "shared-id"))["cost_picousd"] == 2
    with pytest.raises(NotFound):
        await ledger.get("c", "shared-id")


async def test_generated_task_ends_with_its_request(ledger: Ledger) -> None:
    ledger.record(rec(task="req-x", end_outcome="failed", outcome="error"))
    assert (await ledger.get("acme", "req-x"))["status"] == "failed"


async def test_late_record_after_the_task_ended_still_counts(ledger: Ledger) -> None:
    ledger.record(rec(cost=100))
    await ledger.complete("acme", "t1", "succeeded")
    ledger.record(rec(cost=50))  # e.g. replayed from the spool after the outage
    task = await ledger.get("acme", "t1")
    assert task["cost_picousd"] == 150 and task["status"] == "succeeded"
    now = time.time()
    (row,) = (await ledger.report("acme", now - 60, now))["task_types"]
    assert row["cost_picousd"] == 150 and row["succeeded"] == 1


async def test_sweep_abandons_idle_tasks_exactly_once(ledger: Ledger) -> None:
    old = time.time() - 120
    ledger.record(rec(task="idle", started_at=old))
    ledger.record(rec(task="busy"))
    await ledger.flush()
    results = await asyncio.gather(*(ledger.sweep_once() for _ in range(5)))
    assert sum(results) == 1
    assert (await ledger.get("acme", "idle"))["status"] == "abandoned"
    assert (await ledger.get("acme", "busy"))["status"] == "open"


async def test_report_counts_failures_in_the_cost_per_success(ledger: Ledger) -> None:
    for i, (outcome, cost) in enumerate([("succeeded", 100), ("succeeded", 300), ("failed", 200)]):
        ledger.record(rec(task=f"t{i}", cost=cost))
        await ledger.complete("acme", f"t{i}", outcome)
    now = time.time()
    (row,) = (await ledger.report("acme", now - 60, now))["task_types"]
    assert (row["succeeded"], row["failed"], row["success_rate"]) == (2, 1, pytest.approx(2 / 3))
    assert row["cost_per_succeeded_task_usd"] == pytest.approx(300e-12)  # (100 + 300 + 200) / 2
    assert row["waste_usd"]["failed_task"] == pytest.approx(200e-12)
    assert row["margin_usd"] == pytest.approx(0.1 - 600e-12)


async def test_list_filters_and_paginates(ledger: Ledger) -> None:
    for i in range(7):
        ledger.record(rec(task=f"task-{i}", started_at=time.time() + i * 0.001))
    await ledger.complete("acme", "task-3", "failed")
    page = await ledger.list("acme", task_type=None, status=None, since=None, until=None, limit=3, before=None)
    ids = [t["task_id"] for t in page["data"]]
    assert ids == ["task-6", "task-5", "task-4"] and page["has_more"]
    page2 = await ledger.list("acme", task_type=None, status=None, since=None, until=None, limit=3,
                              before=page["next_before"])
    assert [t["task_id"] for t in page2["data"]] == ["task-3", "task-2", "task-1"]
    failed = await ledger.list("acme", task_type=None, status="failed", since=None, until=None, limit=10, before=None)
    assert [t["task_id"] for t in failed["data"]] == ["task-3"]


async def test_budget_reservations_never_overshoot(ledger: Ledger) -> None:
    budget = int(Decimal("0.001") * PICO)
    worst = budget // 4 + 1  # only three fit
    period = period_of(time.time())
    results = await asyncio.gather(*(ledger.reserve("acme", "t1", worst, budget, period, ledger.config.budgets) for _ in range(10)),
                                   return_exceptions=True)
    assert sum(r is True for r in results) == 3
    over = [r for r in results if isinstance(r, RateLimited)]
    assert len(over) == 7 and over[0].code == "budget_exceeded" and "task budget" in over[0].message
    # settling releases the reservation and books the real cost
    ledger.record(rec(cost=worst // 2, reserved_picousd=worst))
    assert await ledger.reserve("acme", "t1", worst // 2, budget, period, ledger.config.budgets) is True


async def test_tenant_daily_budget(ledger: Ledger) -> None:
    period = period_of(time.time())
    ledger.record(rec(tenant="capped", task="a", cost=int(Decimal("0.0019") * PICO), spend_period=period))
    await ledger.flush()
    with pytest.raises(RateLimited) as info:
        await ledger.reserve("capped", "b", int(Decimal("0.0002") * PICO), None, period, ledger.config.budgets)
    assert "daily budget of tenant 'capped'" in info.value.message and "0.0019" in info.value.message


async def test_100k_records_sum_exactly(ledger: Ledger) -> None:
    rng = random.Random(11)
    costs = [rng.randint(0, 10**10) for _ in range(100_000)]
    for i, cost in enumerate(costs):
        ledger.record(rec(task="big", request=f"r{i}", cost=cost, usage=Usage(1, 1)))
    await ledger.writer.flush(timeout=120)
    task = await ledger.get("acme", "big")
    assert task["requests"] == 100_000
    assert task["cost_picousd"] == sum(costs)


async def test_an_estimated_attempt_makes_the_cost_incomplete(ledger: Ledger) -> None:
    ledger.record(rec(request="r", cost=70))
    assert (await ledger.get("acme", "t1"))["cost_complete"] is True
    ledger.record(rec(request="s", cost=50, usage_source="estimated", outcome="cancelled", waste_reason="cancelled",
                      usage_lower_bound=True))
    task = await ledger.get("acme", "t1")
    assert (task["unpriced_attempts"], task["estimated_attempts"], task["cost_complete"]) == (0, 1, False)
    records = await ledger.attempts("acme", "t1")
    assert [r["usage_lower_bound"] for r in records] == [False, True]
    await ledger.complete("acme", "t1", "succeeded")
    now = time.time()
    (row,) = (await ledger.report("acme", now - 60, now))["task_types"]
    assert (row["estimated_attempts"], row["cost_complete"]) == (1, False)


async def test_every_money_field_has_an_exact_twin(ledger: Ledger) -> None:
    # $1,234,567.891234567891 over two records (one record holds < $1M): a float keeps ~16 significant
    # digits, the twins keep all of them
    big = 1_234_567_891_234_567_891
    ledger.record(rec(cost=big - 617_283_945_617_283_945))
    ledger.record(rec(cost=617_283_945_617_283_945))
    ledger.record(rec(cost=1, waste_reason="failed", outcome="error", final=False))
    task = await ledger.get("acme", "t1")
    assert task["cost_picousd"] == big + 1 and task["cost_usd_exact"] == "1234567.891234567892"
    assert float(task["cost_usd_exact"]) == task["cost_usd"] and Decimal(task["cost_usd"]) != Decimal(
        task["cost_usd_exact"]), "the float is the inexact one"
    assert task["waste_usd_exact"] == "0.000000000001" and task["waste_picousd"] == 1
    assert task["models"][0]["cost_usd_exact"] == "1234567.891234567892"
    await ledger.complete("acme", "t1", "succeeded")
    done = await ledger.get("acme", "t1")  # triage is priced at $0.05 a task
    assert done["price_usd_exact"] == "0.05"
    assert done["margin_picousd"] == 5 * 10**10 - big - 1
    assert Decimal(done["margin_usd_exact"]) == Decimal("0.05") - Decimal("1234567.891234567892")
    now = time.time()
    (row,) = (await ledger.report("acme", now - 60, now))["task_types"]
    assert row["cost_usd_exact"] == "1234567.891234567892"
    assert row["cost_per_succeeded_task_usd_exact"] == "1234567.891234567892"
    assert row["waste_usd_exact"]["failed"] == "0.000000000001"
    assert Decimal(row["revenue_usd_exact"]) == Decimal("0.05")
    assert Decimal(row["margin_usd_exact"]) == Decimal("0.05") - Decimal("1234567.891234567892")
    assert Decimal(row["margin_per_succeeded_task_usd_exact"]) == Decimal(row["margin_usd_exact"])
