"""Deployment health as the request path sees it: circuit breakers and latency.

The breaker rules and the EWMA are pure functions in :mod:`policies.health` and
:mod:`policies.strategies`; this module holds the current values and shares
the breakers between gateway processes through one Redis hash
(``tg:health``: deployment id -> state JSON), so that one replica's discovery
(a 429, a dead upstream) protects the others within one sync interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import orjson

from gateway.ledger.writer import UNREACHABLE
from gateway.store.client import Store, cancel_requested
from policies.health import BreakerState, begin_attempt, clamp, panic_probe, record_failure, record_success
from policies.schema import BreakerSettings
from policies.strategies import LatencySample, LatencyStats, update_ewma
from providers.base import Deployment, UpstreamFailure

log = logging.getLogger("taskgate.health")
HEALTH_KEY = "tg:health"
_CLOSED = BreakerState()


class HealthBook:
    def __init__(self, redis: Store, sync_interval: float = 0.5,
                 settings: Callable[[], BreakerSettings] = BreakerSettings) -> None:
        self.redis = redis
        self.settings = settings  # the breaker settings in force (a reload may change them)
        self.sync_interval = sync_interval
        self.breakers: dict[str, BreakerState] = {}
        self.latency: dict[str, LatencyStats] = {}
        self._dirty: dict[str, BreakerState] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._sync()
        self.start_loop()

    def start_loop(self) -> None:
        """The sync loop alone (when the first sync failed: the store may come back)."""
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2)  # bounded, whatever the store client does

    # --- updates from the request path (in memory; published by the sync loop) --

    def _set(self, dep_id: str, state: BreakerState) -> None:
        old = self.breakers.get(dep_id, _CLOSED)
        if state is not old and state != old:
            self.breakers[dep_id] = state
            self._dirty[dep_id] = state

    def attempt_started(self, dep: Deployment) -> None:
        state = self.breakers.get(dep.id)
        if state is not None and state.phase != "closed":  # only half-open breakers count probes
            self._set(dep.id, begin_attempt(state, time.time()))

    def succeeded(self, dep: Deployment, latency_s: float, ttft_s: float | None, alpha: float) -> None:
        state = self.breakers.get(dep.id)
        if state is not None and state != _CLOSED:
            self._set(dep.id, record_success(state, time.time()))
        self.latency[dep.id] = update_ewma(self.latency.get(dep.id), LatencySample(latency_s, ttft_s), alpha)

    def probe(self, dep_id: str) -> None:
        """Panic (policies.health.when_none_usable): let probes through an open breaker now."""
        state = self.breakers.get(dep_id)
        if state is not None:
            self._set(dep_id, panic_probe(state, time.time()))

    def failed(self, dep: Deployment, failure: UpstreamFailure, settings: BreakerSettings) -> None:
        before = self.breakers.get(dep.id, BreakerState())
        after = record_failure(before, time.time(), settings, failure.reason, failure.retry_after)
        if after.phase == "open" and before.phase != "open":
            log.warning("circuit opened for deployment %s (%s) for %.1fs", dep.id, failure.reason.value,
                        after.open_until - time.time())
        self._set(dep.id, after)

    # --- sharing through Redis ------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                await self._sync()
            except UNREACHABLE:
                pass  # keep local state; the ledger writer reports the outage
            except Exception:
                log.exception("syncing deployment health failed")
            if cancel_requested():
                return

    async def _sync(self) -> None:
        dirty, self._dirty = self._dirty, {}
        pipe = self.redis.pipeline(transaction=False)
        if dirty:
            pipe.hset(HEALTH_KEY, mapping={k: orjson.dumps(v.to_dict()) for k, v in dirty.items()})
        pipe.hgetall(HEALTH_KEY)
        try:
            shared = (await pipe.execute())[-1]
        except UNREACHABLE:
            self._dirty = {**dirty, **self._dirty}
            raise
        now, settings = time.time(), self.settings()
        for raw_id, raw in shared.items():
            dep_id = raw_id.decode()
            if dep_id in self._dirty:
                continue  # changed here since this sync started; ours is newer
            try:
                state = BreakerState.from_dict(orjson.loads(raw))
            except orjson.JSONDecodeError:
                continue
            capped = clamp(state, now, settings)
            if capped is not state:  # beyond the cap: keep the capped state and repair the shared one
                log.warning("deployment %s: shared breaker open beyond the cap; capped to %.0fs", dep_id,
                            capped.open_until - now)
                self._dirty[dep_id] = capped
            self.breakers[dep_id] = capped
