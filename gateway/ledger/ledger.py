"""The task ledger: per-request records summed per task, in Redis.

The request path calls :meth:`Ledger.record` (never blocks; the writer batches
to Redis or the spool) and, when budgets apply, :meth:`Ledger.reserve` before
forwarding. The tasks API reads and ends tasks through the other methods.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from gateway.accounting.metrics import Metrics
from gateway.accounting.pricing import PICO, format_usd
from gateway.accounting.records import AttemptRecord
from gateway.config.load import Config
from gateway.config.schema import BudgetsSection, TasksSection
from gateway.errors import Conflict, NotFound, RateLimited, ServiceUnavailable
from gateway.ledger import scripts
from gateway.ledger.spool import Spool
from gateway.ledger.summary import report_rows, task_summary
from gateway.ledger.writer import UNREACHABLE, Op, Writer

log = logging.getLogger("taskgate.ledger")
OUTCOMES = ("succeeded", "failed")
UNLIMITED = str(2**62)


@functools.lru_cache(maxsize=4)
def _day_of(day_number: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(day_number * 86400))


def utc_day(ts: float) -> str:
    return _day_of(int(ts // 86400))


def spend_keys(tenant: str, period: tuple[str, str]) -> list[str]:
    day, month = period
    return [f"tg:spend:{tenant}:d:{day}", f"tg:spend:{tenant}:m:{month}"]


def period_of(ts: float) -> tuple[str, str]:
    d = datetime.fromtimestamp(ts, timezone.utc)
    return d.strftime("%Y%m%d"), d.strftime("%Y%m")


def picousd(value: Decimal) -> int:
    return int((value * PICO).to_integral_value())


class ConfigSource(Protocol):
    """Where the ledger reads the config in force (a reload replaces it; see gateway/snapshot.py)."""

    @property
    def config(self) -> Config: ...


class Ledger:
    def __init__(self, redis: aioredis.Redis, source: ConfigSource, metrics: Metrics) -> None:
        self.redis = redis
        self._source = source
        self.metrics = metrics
        self.scripts = {name: redis.register_script(getattr(scripts, name.upper()))
                        for name in ("record", "complete", "sweep", "reserve", "audit")}
        self.writer = Writer(redis, {name: self.scripts[name] for name in ("record", "audit")},
                             Spool(source.config.spool_dir), self._on_result)
        self._loops: list[asyncio.Task[None]] = []

    @property
    def config(self) -> Config:
        return self._source.config

    @property
    def settings(self) -> TasksSection:
        return self._source.config.tasks

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        await self.writer.start()
        self._loops = [asyncio.create_task(self._sweep_loop()), asyncio.create_task(self._budget_gauge_loop())]

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.writer.stop()

    @property
    def available(self) -> bool:
        return self.writer.healthy

    def check_available(self) -> None:
        """Fail-closed mode refuses requests while the store is unreachable."""
        if not self.writer.healthy and self.config.store.on_unavailable == "fail_closed":
            raise ServiceUnavailable("the ledger store is unreachable and the gateway is configured to fail "
                                     "closed (store.on_unavailable: fail_closed)", code="store_unavailable")

    # --- writing -----------------------------------------------------------------

    def record(self, rec: AttemptRecord) -> str:
        """Queues the attempt for Redis; returns the record as written (JSON), for the usage log."""
        u = rec.usage
        arg = {
            "tenant": rec.tenant, "task_id": rec.task_id, "task_type": rec.task_type,
            "request_id": rec.request_id, "attempt": rec.attempt, "ts": f"{rec.started_at + rec.duration_s:.6f}",
            "operation": rec.operation, "model": rec.model, "deployment": rec.deployment, "provider": rec.provider,
            "outcome": rec.outcome, "status": rec.status, "error_reason": rec.error_reason or "",
            "input_tokens": u.input_tokens if u else 0, "output_tokens": u.output_tokens if u else 0,
            "cached_input_tokens": u.cached_input_tokens if u else 0,
            "reasoning_tokens": u.reasoning_tokens if u else 0,
            "usage_source": rec.usage_source,
            "cost_source": ("unpriced" if rec.cost_picousd is None else
                            "estimated" if rec.usage_source == "estimated" else "computed"),
            "cost": "" if rec.cost_picousd is None else str(rec.cost_picousd),
            "cost_usd": "" if rec.cost_picousd is None else format_usd(rec.cost_picousd),
            "waste_reason": rec.waste_reason or "", "final": rec.final,
            "duration_s": round(rec.duration_s, 6), "ttft_s": rec.ttft_s,
            "end_outcome": rec.end_outcome or "",
            "reserved": "" if not rec.reserved_picousd else str(rec.reserved_picousd),
            "budget": "" if rec.budget_picousd is None else str(rec.budget_picousd),
            "spend_keys": spend_keys(rec.tenant, rec.spend_period if rec.spend_period[0] else period_of(rec.started_at)),
            "day": utc_day(time.time()),
            "retention": (self.settings.one_request_retention_hours * 3600 if rec.end_outcome
                          else self.settings.retention_days * 86400),
            "stream_maxlen": self.settings.records_stream_maxlen,
        }
        line = orjson.dumps(arg).decode()
        self.writer.submit(Op("record", line))
        return line

    def audit(self, entry: dict[str, Any], maxlen: int = 100_000) -> None:
        """An audit entry (never prompt text), through the same batched, spooled writer."""
        self.writer.submit(Op("audit", orjson.dumps({**entry, "maxlen": maxlen}).decode()))

    async def read_audit(self, tenant: str | None, limit: int, before: str | None) -> dict[str, Any]:
        """Newest first; ``tenant`` None means every tenant (admins)."""
        await self.flush()
        out: list[dict[str, Any]] = []
        high = f"({before}" if before else "+"
        while len(out) < limit:
            page: Any = await self.redis.xrevrange("tg:audit", high, "-", count=max(limit * 2, 50))
            if not page:
                break
            for entry_id, fields in page:
                entry = orjson.loads(fields[b"e"])
                entry.pop("maxlen", None)
                entry["id"] = entry_id.decode()
                if tenant is None or entry.get("tenant") == tenant:
                    out.append(entry)
                    if len(out) == limit:
                        break
            high = f"({page[-1][0].decode()}"
        return {"object": "list", "data": out, "next_before": out[-1]["id"] if len(out) == limit else None}

    async def task_spent(self, tenant: str, task_id: str) -> int:
        """What the task has spent plus what requests in flight reserved (for the budget strategy)."""
        spent, reserved = await self.redis.hmget(f"tg:task:{tenant}:{task_id}", "cost_pusd", "reserved_pusd")
        return int(spent or 0) + int(reserved or 0)

    def _on_result(self, op: Op, result: Any) -> None:
        # RECORD returns {2, type, cost, outcome} when the record ended a (one-request) task.
        if op.script == "record" and isinstance(result, list) and result and result[0] == 2:
            self.metrics.task_ended(_s(result[1]), _s(result[3]), int(result[2]), int(result[4]))

    async def flush(self) -> None:
        await self.writer.flush()

    # --- budgets -----------------------------------------------------------------

    async def reserve(self, tenant: str, task_id: str, amount: int, task_budget: int | None,
                      period: tuple[str, str], budgets: BudgetsSection) -> bool:
        """Reserves ``amount`` against every budget, or raises 429 ``budget_exceeded``.

        ``budgets`` is the section of the config the request started with. Returns
        False (nothing reserved) when the store is unreachable and the gateway fails open.
        """
        limits = budgets.tenants.get(tenant)
        day_key, month_key = spend_keys(tenant, period)
        scopes = [
            [f"tg:task:{tenant}:{task_id}", "cost_pusd", "reserved_pusd",
             str(task_budget) if task_budget is not None else UNLIMITED, f"task budget of task '{task_id}'", 0],
            [day_key, "spent", "reserved",
             str(picousd(limits.daily_usd)) if limits and limits.daily_usd else UNLIMITED,
             f"daily budget of tenant '{tenant}'", 3456000],
            [month_key, "spent", "reserved",
             str(picousd(limits.monthly_usd)) if limits and limits.monthly_usd else UNLIMITED,
             f"monthly budget of tenant '{tenant}'", 3456000],
        ]
        if not self.writer.healthy:
            self.check_available()
            return False
        try:
            result = await self.scripts["reserve"](args=[orjson.dumps({"amount": str(amount), "scopes": scopes})])
        except UNREACHABLE:
            self.check_available()
            return False
        if _s(result[0]) == "over":
            label, spent, reserved, limit = (_s(x) for x in result[1:5])
            raise RateLimited(
                f"budget_exceeded: the {label} is {format_usd(int(limit))} USD; {format_usd(int(spent))} USD is "
                f"spent and {format_usd(int(reserved))} USD is reserved by requests in flight, and this request "
                f"may cost up to {format_usd(amount)} USD", code="budget_exceeded")
        return True

    async def refresh_budget_gauges(self) -> None:
        """``taskgate_budget_remaining_usd`` for every tenant the budgets section names."""
        if not self.config.budgets.tenants:
            return
        period = period_of(time.time())
        pipe = self.redis.pipeline(transaction=False)
        names = sorted(self.config.budgets.tenants)
        for name in names:
            for key in spend_keys(name, period):
                pipe.hget(key, "spent")
        spent = iter(await pipe.execute())
        for name in names:
            limits = self.config.budgets.tenants[name]
            for period_name, limit in (("day", limits.daily_usd), ("month", limits.monthly_usd)):
                used = int(next(spent) or 0)
                if limit is not None:
                    self.metrics.budget_remaining.labels(name, period_name).set(
                        float(limit - Decimal(used) / PICO))

    async def _budget_gauge_loop(self) -> None:
        while True:
            try:
                await self.refresh_budget_gauges()
            except UNREACHABLE:
                pass
            except Exception:
                log.exception("refreshing budget gauges failed")
            await asyncio.sleep(15)

    # --- reading and ending tasks ------------------------------------------------

    async def get(self, tenant: str, task_id: str) -> dict[str, Any]:
        await self.flush()
        h: Any = await self.redis.hgetall(f"tg:task:{tenant}:{task_id}")
        if not h or b"status" not in h:
            raise NotFound(f"no task '{task_id}'", param="task_id", code="task_not_found")
        decoded = {k.decode(): v.decode() for k, v in h.items()}
        return task_summary(decoded, self._price(decoded.get("task_type", "")))

    async def attempts(self, tenant: str, task_id: str) -> list[dict[str, Any]]:
        lines = await self.redis.lrange(f"tg:task:{tenant}:{task_id}:attempts", 0, -1)
        return [orjson.loads(line) for line in lines]

    async def complete(self, tenant: str, task_id: str, outcome: str) -> dict[str, Any]:
        await self.flush()
        for wait in (0.05, 0.1, 0.2, 0.4, 0):
            now = time.time()
            result = await self.scripts["complete"](
                args=[tenant, task_id, outcome, str(now), utc_day(now), str(self.settings.retention_days * 86400)])
            code = _s(result[0])
            if code != "missing" or not wait:
                break
            # Another worker or replica may still hold this task's first record in its write
            # queue (a few ms): wait a little before answering 404.
            await asyncio.sleep(wait)
        if code == "missing":
            raise NotFound(f"no task '{task_id}'", param="task_id", code="task_not_found")
        if code == "conflict":
            raise Conflict(f"task '{task_id}' already ended as '{_s(result[1])}'", code="task_already_ended")
        if code == "ended":
            self.metrics.task_ended(_s(result[1]), outcome, int(result[2]), int(result[4]))
        return await self.get(tenant, task_id)

    async def list(self, tenant: str, *, task_type: str | None, status: str | None, since: float | None,
                   until: float | None, limit: int, before: float | None) -> dict[str, Any]:
        """Newest first. ``before`` is the cursor: the created_at of the last task of the previous page."""
        await self.flush()
        high = f"({before}" if before is not None else (str(until) if until is not None else "+inf")
        low = str(since) if since is not None else "-inf"
        out: list[dict[str, Any]] = []
        offset = 0
        while len(out) < limit:
            page: Any = await self.redis.zrevrangebyscore(f"tg:tasks:{tenant}", high, low, start=offset,
                                                     num=max(limit * 2, 50), withscores=True)
            if not page:
                break
            offset += len(page)
            pipe = self.redis.pipeline(transaction=False)
            for member, _ in page:
                pipe.hgetall(f"tg:task:{tenant}:{member.decode()}")
            for (member, score), h in zip(page, await pipe.execute()):
                if not h:
                    continue  # expired by retention
                d = {k.decode(): v.decode() for k, v in h.items()}
                if (task_type and d.get("task_type") != task_type) or (status and d.get("status") != status):
                    continue
                out.append(task_summary(d, self._price(d.get("task_type", ""))))
                if len(out) == limit:
                    break
        cursor = out[-1]["created_at"] if len(out) == limit else None
        return {"object": "list", "data": out, "has_more": cursor is not None, "next_before": cursor}

    async def report(self, tenant: str, since: float, until: float) -> dict[str, Any]:
        await self.flush()
        days: list[str] = []
        day = datetime.fromtimestamp(since, timezone.utc).date()
        last = datetime.fromtimestamp(until, timezone.utc).date()
        while day <= last and len(days) < 400:
            days.append(day.strftime("%Y%m%d"))
            day += timedelta(days=1)
        pipe = self.redis.pipeline(transaction=False)
        for d in days:
            pipe.hgetall(f"tg:agg:{tenant}:{d}")
        aggs = [{k.decode(): v.decode() for k, v in h.items()} for h in await pipe.execute()]
        prices = {name: t.price_usd for name, t in self.settings.types.items()}
        return {"object": "report", "tenant": tenant, "since": since, "until": until,
                "task_types": report_rows(aggs, prices)}

    def _price(self, task_type: str) -> Decimal | None:
        ttype = self.settings.types.get(task_type)
        return ttype.price_usd if ttype else None

    # --- sweeping idle tasks -----------------------------------------------------

    async def sweep_once(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        cutoff = now - self.settings.idle_timeout_s
        result = await self.scripts["sweep"](
            args=[str(cutoff), str(now), utc_day(now), "500", str(self.settings.retention_days * 86400)])
        for i in range(0, len(result), 3):
            self.metrics.task_ended(_s(result[i]), "abandoned", int(result[i + 1]), int(result[i + 2]))
        return len(result) // 3

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.flush()
                await self.sweep_once()
            except UNREACHABLE:
                pass
            except Exception:
                log.exception("sweeping idle tasks failed")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
