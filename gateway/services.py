"""The clients with a lifetime, built once in the app's lifespan and passed to what needs them.

    Services
    ├── transport    the upstream HTTP client        (gateway/upstream/transport.py)
    ├── store        the Redis client                (gateway/store/)
    ├── ledger       tasks, budgets, the audit log   (gateway/ledger/)
    ├── health       breakers and latency, shared    (gateway/upstream/health.py) 
    ├── outcomes     job outcomes per deployment      (gateway/upstream/outcomes.py, cost_per_success)
    ├── metrics      the app's Prometheus registry   (gateway/accounting/metrics.py)
    └── accountant   where attempt records go        (gateway/accounting/accountant.py)

Nothing here is a module global: tests build their own, with a scripted
transport or a Redis of their own. What a config means (prices, facts,
timeouts) is not here but in :mod:`gateway.snapshot`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

from gateway.accounting.accountant import Accountant
from gateway.accounting.metrics import Metrics
from gateway.ledger.ledger import Ledger
from gateway.snapshot import CurrentSnapshot
from gateway.store.client import Store, connect
from gateway.store.embedded import STORE_URL_ENV, EmbeddedRedis
from gateway.upstream.health import HealthBook
from gateway.upstream.outcomes import OutcomeBook
from gateway.upstream.demo import DemoTransport
from gateway.upstream.transport import H1Transport, Transport
from policies.decide import DEFAULT_ROUTING

log = logging.getLogger("taskgate")


@dataclass(frozen=True, slots=True)
class Services:
    transport: Transport
    store: Store
    ledger: Ledger
    health: HealthBook
    metrics: Metrics
    accountant: Accountant
    outcomes: OutcomeBook
    embedded: EmbeddedRedis | None = field(default=None, repr=False)

    async def ready(self) -> bool:
        """The store answers (``/readyz``)."""
        try:
            return bool(await self.store.ping())
        except Exception:
            return False


def upstream_limits(snapshots: CurrentSnapshot) -> tuple[int, int]:
    """The upstream response limits in force at each request (a reload applies at once)."""
    server = snapshots.config.server
    return server.max_upstream_response_bytes, server.max_upstream_event_bytes


async def open_services(snapshots: CurrentSnapshot, metrics: Metrics,
                        transport: Transport | None = None) -> Services:
    """Connect to the store (starting the embedded one if nobody did), start the background loops."""
    config = snapshots.config
    url = config.store.url
    embedded = None
    if url == "embedded":
        url = os.environ.get(STORE_URL_ENV) or ""
        if not url:  # not started by `taskgate serve`: run our own
            embedded = EmbeddedRedis(config.store.path)
            url = embedded.start()
    if transport is None:
        upstream = H1Transport(lambda: upstream_limits(snapshots))
        await upstream.start()
        transport = DemoTransport(upstream)  # answers the built-in demo model's demo:// URL itself
    store = connect(url)
    ledger = Ledger(store, snapshots, metrics)
    health = HealthBook(store, settings=lambda: (snapshots.config.policies.routing or DEFAULT_ROUTING).breaker)
    await ledger.start()
    try:
        await health.start()
    except Exception as exc:  # the store may be down at start: serve anyway (fail-open)
        log.warning("could not read shared deployment health at startup: %s", exc)
        health.start_loop()
    outcomes = OutcomeBook(store)
    outcomes.start()
    return Services(transport, store, ledger, health, metrics, Accountant(metrics, ledger, access=os.environ.get("TASKGATE_ACCESS_LOG") == "1"),
                    outcomes, embedded)


async def close_services(services: Services) -> None:
    await services.health.stop()
    await services.outcomes.stop()
    await services.transport.close()
    await services.ledger.stop()
    await services.store.aclose()
    if services.embedded is not None:
        await asyncio.get_running_loop().run_in_executor(None, services.embedded.stop)
