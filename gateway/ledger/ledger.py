"""The task ledger: per-request records summed per task, in Redis.

The request path calls :meth:`Ledger.intent` before its first upstream byte and
:meth:`Ledger.record` for every attempt (neither blocks: the writer batches to
Redis or the spool, through a local journal), and :meth:`Ledger.reserve` when
budgets apply. The tasks API reads (:mod:`.reads`) and ends tasks.

**The guarantee.** Every attempt that reached an upstream is in the ledger,
exactly, or — when the process serving it died, or lost the store for longer
than the intent lease — as an ``interrupted`` record whose cost is an estimate
from what was known before the first byte (the prompt, priced), marked
``usage_source: estimated``. Its reservation is released either way. See
docs/RELIABILITY.md for what each failure does and the test that shows it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any, Protocol

import orjson

from gateway.accounting.metrics import Metrics
from gateway.accounting.pricing import PICO, format_usd
from gateway.accounting.records import AttemptRecord
from gateway.config.load import Config
from gateway.config.schema import BudgetsSection, TasksSection
from gateway.errors import Conflict, NotFound, RateLimited, ServiceUnavailable
from gateway.ledger import scripts
from gateway.ledger.deadletter import DeadLetters
from gateway.ledger.encode import (
    keys_tail,
    period_of,
    record_json,
    task_keys,
    utc_day,
)
from gateway.ledger.history import OpenedBudgets
from gateway.ledger.keys import AUDIT, TENANTS, TenantKeys, for_tenant
from gateway.ledger.limiter import Limiter
from gateway.ledger.reads import Reads
from gateway.ledger.spool import Spool
from gateway.ledger.writer import FINAL, INTENT, UNREACHABLE, Op, Writer
from gateway.store.client import Store, cancel_requested

log = logging.getLogger("taskgate.ledger")
OUTCOMES = ("succeeded", "failed", "abandoned")  # what a client may end a task as
UNLIMITED = ""  # a scope with no budget: reserved in, never refused by (never shown as an amount)


class ConfigSource(Protocol):
    """Where the ledger reads the config in force (a reload replaces it; see gateway/snapshot.py)."""

    @property
    def config(self) -> Config: ...


def picousd(value: Decimal) -> int:
    return int((value * PICO).to_integral_value())


class Ledger(Reads):
    def __init__(self, redis: Store, source: ConfigSource, metrics: Metrics) -> None:
        self.redis = redis
        self._source = source
        self.metrics = metrics
        self.scripts = {name: redis.register_script(getattr(scripts, name.upper()))
                        for name in ("record", "settle", "tenant", "complete", "sweep", "reserve", "audit")}
        spool = Spool(source.config.spool_dir)
        self.dead = DeadLetters(spool.dir, metrics)
        self.writer = Writer(redis, {name: self.scripts[name] for name in ("record", "tenant", "audit")},
                             spool, self._on_result, self.dead.add)
        self.limits = Limiter(redis, lambda: self.writer.healthy)  # rate limits (gateway/ledger/limiter.py)
        self._tenants: set[str] = set()  # registered in the store's tenant set by this process
        self._in_flight: dict[str, TenantKeys] = {}  # request id -> keys, for lease renewal
        self._loops: list[asyncio.Task[None]] = []
        self._tails_of: Config | None = None  # the config _tails was made from
        # (tenant, model, spend period, day, one request, key_spend) -> encode.keys_tail
        self._tails: dict[tuple[str, str, tuple[str, str], str, bool, tuple[str, ...]], str] = {}
        self.opened = OpenedBudgets(redis)  # budgets of tasks opened with POST /v1/tasks (gateway/ledger/history.py)

    @property
    def config(self) -> Config:
        return self._source.config

    @property
    def settings(self) -> TasksSection:
        return self._source.config.tasks

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        try:  # every node knows the scripts before the first batch (a cluster pipelines none)
            for script in self.scripts.values():
                await self.redis.script_load(script.script)
        except UNREACHABLE:
            pass  # the store is down at start: loaded on first use
        await self.writer.start()
        self._loops = [asyncio.create_task(self._sweep_loop()), asyncio.create_task(self._budget_gauge_loop()),
                       asyncio.create_task(self._renew_loop())]

    async def stop(self, timeout: float = 15.0) -> None:
        for loop in self._loops:
            loop.cancel()
        if self._loops:  # bounded: a store call that swallowed the cancellation must not hold the stop
            await asyncio.wait(self._loops, timeout=2)
        await self.writer.stop(timeout)

    @property
    def available(self) -> bool:
        return self.writer.healthy

    def check_available(self) -> None:
        """Fail-closed mode refuses requests while the store is unreachable."""
        if not self.writer.healthy and self.config.store.on_unavailable == "fail_closed":
            raise ServiceUnavailable("the ledger store is unreachable and the gateway is configured to fail "
                                     "closed (store.on_unavailable: fail_closed)", code="store_unavailable")

    async def flush(self) -> None:
        await self.writer.flush()

    # --- writing -----------------------------------------------------------------

    def _keys(self, tenant: str) -> TenantKeys:
        keys = for_tenant(tenant)
        if tenant not in self._tenants:
            self._tenants.add(tenant)
            self.writer.submit(Op("tenant", tenant, TENANTS))
        return keys

    @property
    def dedup_ttl(self) -> int:
        return self.settings.dedup_window_hours * 3600

    def _line(self, rec: AttemptRecord, keys: TenantKeys) -> tuple[str, str]:
        """The RECORD argument (keys, then the record) and the record alone. The keys object after
        the task's two keys (encode.keys_tail) is kept per what it depends on, for this config."""
        config = self.config
        if config is not self._tails_of or len(self._tails) > 1024:  # a reload: settings or routing may differ
            self._tails_of, self._tails = config, {}
        period = rec.spend_period if rec.spend_period[0] else period_of(rec.started_at)
        day = utc_day(time.time())
        at = (rec.tenant, rec.model, period, day, rec.one_request, rec.key_spend)
        tail = self._tails.get(at)
        if tail is None:
            tail = self._tails[at] = keys_tail(rec, period, day, keys, config)
        line = record_json(rec).decode()
        task_id = rec.task_id
        return f'{{"task":"{keys.task(task_id)}","att":"{keys.attempts(task_id)}",{tail}\x1e{line}', line

    def record(self, rec: AttemptRecord) -> str:
        """Queues the attempt for Redis; returns the record as written (JSON), for the usage log."""
        keys = self._keys(rec.tenant)
        arg, line = self._line(rec, keys)
        self.writer.submit(Op("record", arg, keys.tasks, FINAL, rec.request_id) if rec.final
                           else Op("record", arg, keys.tasks))
        if rec.final:
            self._in_flight.pop(rec.request_id, None)
        return line

    def intent(self, interrupted: AttemptRecord) -> None:
        """Before a request's first upstream byte: what to record if it never records its own final
        attempt (the process dies, or the store is gone for longer than the lease)."""
        keys = self._keys(interrupted.tenant)
        arg, _ = self._line(interrupted, keys)
        until = time.time() + self.settings.intent_lease_s
        header = orjson.dumps({"intent": True, "intents": keys.intents, "deadlines": keys.deadlines,
                               "request_id": interrupted.request_id, "due": until}).decode()
        self.writer.submit(Op("record", header + "\x1d" + arg, keys.tasks, INTENT, interrupted.request_id))
        # on disk now, not at the end of this loop turn: the upstream request is written later in
        # this same turn, and a process killed between the two must still leave the intent behind
        self.writer.journal.write_pending()
        self._in_flight[interrupted.request_id] = keys

    def audit(self, entry: dict[str, Any], maxlen: int = 100_000) -> None:
        """An audit entry (never prompt text), through the same batched, spooled writer."""
        self.writer.submit(Op("audit", orjson.dumps({**entry, "maxlen": maxlen}).decode(), AUDIT))

    def _on_result(self, op: Op, result: Any) -> None:
        # RECORD returns {2, type, cost, outcome, waste, model} when the record ended a (one-request) task
        # (as one string, unpacked to that list by gateway/ledger/writer.py unpack_reply).
        if op.script == "record" and isinstance(result, list) and result and result[0] == 2:
            self.metrics.task_ended(_s(result[1]), _s(result[3]), int(result[2]), int(result[4]),
                                    _s(result[5]) if len(result) > 5 else "none")

    async def _renew_loop(self) -> None:
        """Leases of requests in flight are renewed, so that only a dead process's intents expire."""
        while True:
            await asyncio.sleep(max(1.0, self.settings.intent_lease_s / 3))
            by_tenant: dict[str, tuple[TenantKeys, list[str]]] = {}
            for request_id, keys in list(self._in_flight.items()):
                by_tenant.setdefault(keys.base, (keys, []))[1].append(request_id)
            until = time.time() + self.settings.intent_lease_s
            for keys, ids in by_tenant.values():
                self.writer.submit(Op("record", orjson.dumps(
                    {"renew": True, "deadlines": keys.deadlines, "due": until, "ids": ids}).decode(), keys.tasks))

    # --- budgets -----------------------------------------------------------------

    async def reserve(self, tenant: str, task_id: str, amount: int, task_budget: int | None,
                      period: tuple[str, str], budgets: BudgetsSection,
                      key_budgets: tuple[tuple[str, int | None], ...] = ()) -> bool:
        """Reserves ``amount`` against every budget, or raises 429 ``budget_exceeded``.

        ``budgets`` is the section of the config the request started with. Returns
        False (nothing reserved) when the store is unreachable and the gateway fails open.
        The reservation is released by the request's final record, or by its intent's
        settlement if the request never records one. ``key_budgets``: (key id, lifetime budget or
        None) of the calling virtual key and, for an agent, its person's key; the record's
        ``key_spend`` must name the same keys, so that it releases what is reserved here.
        """
        limits = budgets.tenants.get(tenant)
        keys = for_tenant(tenant)
        day_key, month_key = keys.spend(period)
        scopes = [
            [keys.task(task_id), "cost_pusd", "reserved_pusd",
             str(task_budget) if task_budget is not None else UNLIMITED, f"task budget of task '{task_id}'", 0],
            [day_key, "spent", "reserved",
             str(picousd(limits.daily_usd)) if limits and limits.daily_usd else UNLIMITED,
             f"daily budget of tenant '{tenant}'", 3456000],
            [month_key, "spent", "reserved",
             str(picousd(limits.monthly_usd)) if limits and limits.monthly_usd else UNLIMITED,
             f"monthly budget of tenant '{tenant}'", 3456000],
        ]
        scopes += [[keys.key_spend(key_id), "spent", "reserved", str(limit) if limit is not None else UNLIMITED,
                    f"budget of key {key_id}", 0] for key_id, limit in key_budgets]
        if not self.writer.healthy:
            self.check_available()
            return False
        try:
            result = await self.scripts["reserve"](
                keys=[keys.tasks], args=[orjson.dumps({"amount": str(amount), "scopes": scopes})])
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

    async def key_spent(self, tenant: str, key_id: str) -> int:
        """A virtual key's lifetime spend in pico-dollars (an agent's spend counts in its person's too)."""
        spent = await self.redis.hget(for_tenant(tenant).key_spend(key_id), "spent")
        return int(spent or 0)

    async def refresh_budget_gauges(self) -> None:
        """``taskgate_budget_remaining_usd`` for every tenant the budgets section names."""
        if not self.config.budgets.tenants:
            return
        period = period_of(time.time())
        pipe = self.redis.pipeline(transaction=False)
        names = sorted(self.config.budgets.tenants)
        for name in names:
            for key in for_tenant(name).spend(period):
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
            if cancel_requested():
                return
            await asyncio.sleep(15)

    # --- ending tasks ----------------------------------------------------------------

    async def complete(self, tenant: str, task_id: str, outcome: str) -> dict[str, Any]:
        await self.flush()
        keys = for_tenant(tenant)
        k = task_keys(keys, task_id, ("", ""))
        for wait in (0.05, 0.1, 0.2, 0.4, 0):
            now = time.time()
            arg = {"k": {"task": k["task"], "att": k["att"], "open": k["open"], "aggp": k["aggp"]}, "id": task_id,
                   "outcome": outcome, "now": str(now), "day": utc_day(now),
                   "retention": self.settings.retention_days * 86400}
            result = await self.scripts["complete"](keys=[keys.tasks], args=[orjson.dumps(arg)])
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
            self.metrics.task_ended(_s(result[1]), outcome, int(result[2]), int(result[4]), _s(result[5]))
        return await self.get(tenant, task_id)

    async def tenants(self) -> set[str]:
        found: Any = await self.redis.smembers(TENANTS)
        return {_s(t) for t in found} | set(self.config.budgets.tenants) | self._tenants

    async def sweep_once(self, now: float | None = None) -> int:
        """Abandons idle tasks and settles expired intents, tenant by tenant. Returns tasks abandoned."""
        now = time.time() if now is None else now
        abandoned = 0
        for tenant in sorted(await self.tenants()):
            keys = for_tenant(tenant)
            arg = {"k": {"tp": keys.task_prefix, "ap": keys.attempts_prefix, "open": keys.open,
                         "aggp": keys.agg_prefix, "tasks": keys.tasks},
                   "cutoff": str(now - self.settings.idle_timeout_s), "now": str(now), "day": utc_day(now),
                   "max": 500, "retention": self.settings.retention_days * 86400,
                   "index_cutoff": str(now - self.settings.retention_days * 86400)}
            result = await self.scripts["sweep"](keys=[keys.tasks], args=[orjson.dumps(arg)])
            for i in range(0, len(result), 4):
                self.metrics.task_ended(_s(result[i]), "abandoned", int(result[i + 1]), int(result[i + 2]),
                                        _s(result[i + 3]))
            abandoned += len(result) // 4
            await self.settle_once(keys, now)
        return abandoned

    async def settle_once(self, keys: TenantKeys, now: float) -> int:
        """Settles one tenant's intents whose lease ran out as interrupted. Returns how many."""
        settled = await self.scripts["settle"](
            keys=[keys.tasks], args=[orjson.dumps({"intents": keys.intents, "deadlines": keys.deadlines,
                                                   "now": now, "max": 500})])
        for result in settled:
            if isinstance(result, list) and result and result[0] == -1:
                log.error("settling an interrupted request failed: %s", _s(result[1]))
            else:
                self._on_result(Op("record", "", keys.tasks), result)
        if settled:
            self.metrics.interrupted.inc(len(settled))
            log.warning("settled %d interrupted request(s) of %s as estimates", len(settled), keys.base)
        return len(settled)

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
            if cancel_requested():
                return


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
