"""Job outcomes per deployment as the request path sees them (the ``cost_per_success`` strategy).

The ledger's Lua scripts write them when a task ends (gateway/ledger/scripts.py,
``route_outcome``): one hash per tenant and public model, ``tg:{tenant}:route:<model>``,
with ``<task type>|<deployment>|j``, ``|s`` (decayed jobs and successes, x1000) and ``|c``
(their decayed cost, pico-dollars). This book keeps an in-process copy of the hashes
that recent decisions asked for and refreshes them off the hot path every
``sync_interval`` seconds, like the breakers in :mod:`gateway.upstream.health`, so a
decision never waits on the store and every replica decides from the same numbers
(within one interval).
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import MappingProxyType
from typing import Any, Mapping

from gateway.ledger.keys import for_tenant
from gateway.ledger.writer import UNREACHABLE
from gateway.store.client import Store, cancel_requested
from policies.cost_per_success import ArmStats

log = logging.getLogger("taskgate.outcomes")
NONE: Mapping[str, ArmStats] = MappingProxyType({})
SCALE = 1000  # jobs and successes are stored x1000 (integer decay)


def parse_route_hash(raw: Mapping[bytes, bytes]) -> dict[str, dict[str, ArmStats]]:
    """``{task type: {deployment id: ArmStats}}`` from a route hash (pure)."""
    arms: dict[tuple[str, str], dict[str, int]] = {}
    for field, value in raw.items():
        name = field.decode()
        ttype, _, rest = name.partition("|")
        dep, _, kind = rest.rpartition("|")
        if not dep or kind not in ("j", "s", "c"):
            continue
        try:
            arms.setdefault((ttype, dep), {})[kind] = int(value)
        except ValueError:
            continue
    out: dict[str, dict[str, ArmStats]] = {}
    for (ttype, dep), v in arms.items():
        jobs = max(v.get("j", 0), 0) / SCALE
        out.setdefault(ttype, {})[dep] = ArmStats(jobs, min(max(v.get("s", 0), 0) / SCALE, jobs),
                                                  max(v.get("c", 0), 0))
    return out


class OutcomeBook:
    def __init__(self, redis: Store, sync_interval: float = 1.0, forget_after_s: float = 600.0) -> None:
        self.redis = redis
        self.sync_interval = sync_interval
        self.forget_after_s = forget_after_s
        self._wanted: dict[str, float] = {}  # route key -> when a decision last asked for it (monotonic)
        self._stats: dict[str, dict[str, Mapping[str, ArmStats]]] = {}  # key -> task type -> dep -> stats
        self._task: asyncio.Task[None] | None = None

    def arms(self, tenant: str, model: str, task_type: str) -> Mapping[str, ArmStats]:
        """The task type's outcomes by deployment id, as of the last sync (hot path: no I/O).
        A model not asked for before is fetched by the next sync; until then it has no numbers."""
        key = for_tenant(tenant).route(model)
        self._wanted[key] = time.monotonic()
        by_type = self._stats.get(key)
        return NONE if by_type is None else by_type.get(task_type, NONE)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                await self.sync()
            except UNREACHABLE:
                pass  # keep the last numbers; the ledger writer reports the outage
            except Exception:
                log.exception("syncing job outcomes failed")
            if cancel_requested():
                return

    async def sync(self) -> None:
        """Reads every route hash a decision asked for recently (one pipeline), forgets the others."""
        now = time.monotonic()
        for key in [k for k, seen in self._wanted.items() if now - seen > self.forget_after_s]:
            del self._wanted[key]
            self._stats.pop(key, None)
        keys = list(self._wanted)
        if not keys:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        results: list[Any] = await pipe.execute()
        for key, raw in zip(keys, results):
            self._stats[key] = {t: MappingProxyType(d) for t, d in parse_route_hash(raw or {}).items()}
