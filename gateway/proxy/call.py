"""One client request as the proxy path carries it (a frozen value)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gateway.accounting.pricing import PICO
from gateway.config.identity import Tenant
from gateway.ledger.limiter import Grant
from gateway.proxy.tasks import TaskRef
from gateway.snapshot import Snapshot
from providers.base import Deployment, Usage
from providers.canonical import ChatRequest, EmbeddingsRequest


@functools.lru_cache(maxsize=4)
def _period(day_number: int) -> tuple[str, str]:
    day = time.strftime("%Y%m%d", time.gmtime(day_number * 86400))
    return day, day[:6]


def _pico(usd: Decimal | None) -> int | None:
    return None if usd is None else int(usd * PICO)


@dataclass(frozen=True, slots=True)
class Call:
    request_id: str
    operation: str  # the client API (front): chat, responses, messages or embeddings
    tenant: Tenant
    task: TaskRef
    model: str  # the public model name
    request: ChatRequest | EmbeddingsRequest  # canonical, redacted where policy says
    snapshot: Snapshot  # the config this request started with; kept to its end
    budget_picousd: int | None = None  # the task's budget, from X-Task-Budget-USD or the task type
    started: float = field(default_factory=time.time)
    grant: Grant | None = None  # the rate limits it was admitted under (settled by the attempt loop)
    worst: Usage | None = None  # the request's worst-case usage, when admission already computed it

    @property
    def period(self) -> tuple[str, str]:
        """The UTC (day, month) this request's spend is booked to."""
        return _period(int(self.started // 86400))

    @property
    def attribution(self) -> dict[str, Any]:
        """Who acted, for each attempt record: the key, human or agent, and whose spend it counts in."""
        t = self.tenant
        spend = tuple(k for k in (t.key_id, t.person) if k) if t.key_id else ()
        return {"key_id": t.key_id, "actor": t.actor, "agent": t.agent, "person": t.person, "key_spend": spend}

    @property
    def key_budgets(self) -> tuple[tuple[str, int | None], ...]:
        """(key id, lifetime budget in pico-dollars or None) of the key and, for an agent, its person's."""
        t = self.tenant
        if t.key_id is None:
            return ()
        out = [(t.key_id, _pico(t.budget_usd))]
        if t.person:
            out.append((t.person, _pico(t.person_budget_usd)))
        return tuple(out)

    @property
    def params(self) -> frozenset[str]:
        return self.request.params if isinstance(self.request, ChatRequest) else frozenset()

    def response_headers(self, dep: Deployment) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-task-id", self.task.id.encode()),
            (b"x-request-id", self.request_id.encode()),
            (b"x-taskgate-deployment", dep.id.encode()),
            *(self.grant.headers if self.grant is not None else ()),
        ]
