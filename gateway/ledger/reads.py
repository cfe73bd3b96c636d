"""Reading the ledger: tasks, their attempts, lists, reports and the audit log."""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Awaitable, Callable

import orjson

from gateway.config.schema import TasksSection
from gateway.errors import NotFound
from gateway.ledger.keys import AUDIT, for_tenant
from gateway.ledger.summary import actor_rows, report_rows, task_summary
from gateway.store.client import Store


class Reads:
    """The read side of :class:`~gateway.ledger.ledger.Ledger` (a mixin: it uses the ledger's
    ``redis``, ``settings`` and ``flush``)."""

    redis: Store
    flush: Callable[[], Awaitable[None]]

    @property
    def settings(self) -> TasksSection:
        raise NotImplementedError

    def _price(self, task_type: str) -> Decimal | None:
        ttype = self.settings.types.get(task_type)
        return ttype.price_usd if ttype else None

    async def get(self, tenant: str, task_id: str) -> dict[str, Any]:
        await self.flush()
        h: Any = await self.redis.hgetall(for_tenant(tenant).task(task_id))
        if not h or b"status" not in h:
            raise NotFound(f"no task '{task_id}'", param="task_id", code="task_not_found")
        decoded = {k.decode(): v.decode() for k, v in h.items()}
        return task_summary(decoded, self._price(decoded.get("task_type", "")))

    async def attempts(self, tenant: str, task_id: str) -> list[dict[str, Any]]:
        lines: Any = await self.redis.lrange(for_tenant(tenant).attempts(task_id), 0, -1)
        return [orjson.loads(line) for line in lines]

    async def task_spent(self, tenant: str, task_id: str) -> int:
        """What the task has spent plus what requests in flight reserved (for the budget strategy)."""
        spent, reserved = await self.redis.hmget(for_tenant(tenant).task(task_id), "cost_pusd", "reserved_pusd")
        return int(spent or 0) + int(reserved or 0)

    async def list(self, tenant: str, *, task_type: str | None, status: str | None, since: float | None,
                   until: float | None, limit: int, before: float | None) -> dict[str, Any]:
        """Newest first. ``before`` is the cursor: the created_at of the last task of the previous page."""
        await self.flush()
        keys = for_tenant(tenant)
        high = f"({before}" if before is not None else (str(until) if until is not None else "+inf")
        low = str(since) if since is not None else "-inf"
        out: list[dict[str, Any]] = []
        offset = 0
        while len(out) < limit:
            page: Any = await self.redis.zrevrangebyscore(keys.tasks, high, low, start=offset,
                                                          num=max(limit * 2, 50), withscores=True)
            if not page:
                break
            offset += len(page)
            pipe = self.redis.pipeline(transaction=False)
            for member, _ in page:
                pipe.hgetall(keys.task(member.decode()))
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
        aggs = await self._daily(for_tenant(tenant).agg, since, until)
        prices = {name: t.price_usd for name, t in self.settings.types.items()}
        return {"object": "report", "tenant": tenant, "since": since, "until": until,
                "task_types": report_rows(aggs, prices)}

    async def _daily(self, key_of_day: Callable[[str], str], since: float, until: float) -> builtins.list[dict[str, str]]:
        """The daily aggregate hashes of the period (after a flush: what was recorded is counted)."""
        await self.flush()
        pipe = self.redis.pipeline(transaction=False)
        for d in _days(since, until):
            pipe.hgetall(key_of_day(d))
        return [{k.decode(): v.decode() for k, v in h.items()} for h in await pipe.execute()]

    async def report_by_actor(self, tenant: str, since: float, until: float) -> dict[str, Any]:
        """Tasks that ended in the period per person key and per agent (``report --by actor``)."""
        aggs = await self._daily(for_tenant(tenant).agg_who, since, until)
        return {"object": "report", "tenant": tenant, "since": since, "until": until, "by": "actor",
                "actors": actor_rows(aggs)}

    async def read_audit(self, tenant: str | None, limit: int, before: str | None) -> dict[str, Any]:
        """Newest first; ``tenant`` None means every tenant (admins)."""
        await self.flush()
        out: list[dict[str, Any]] = []
        high = f"({before}" if before else "+"
        while len(out) < limit:
            page: Any = await self.redis.xrevrange(AUDIT, high, "-", count=max(limit * 2, 50))
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


def _days(since: float, until: float) -> list[str]:
    """The UTC days of a period, at most 400."""
    days: list[str] = []
    day = datetime.fromtimestamp(since, timezone.utc).date()
    last = datetime.fromtimestamp(until, timezone.utc).date()
    while day <= last and len(days) < 400:
        days.append(day.strftime("%Y%m%d"))
        day += timedelta(days=1)
    return days
