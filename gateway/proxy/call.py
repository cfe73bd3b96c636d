"""One client request as the proxy path carries it (a frozen value)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

from gateway.config.identity import Tenant
from gateway.ledger.limiter import Grant
from gateway.proxy.tasks import TaskRef
from gateway.snapshot import Snapshot
from providers.base import Deployment
from providers.canonical import ChatRequest, EmbeddingsRequest


@functools.lru_cache(maxsize=4)
def _period(day_number: int) -> tuple[str, str]:
    day = time.strftime("%Y%m%d", time.gmtime(day_number * 86400))
    return day, day[:6]


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

    @property
    def period(self) -> tuple[str, str]:
        """The UTC (day, month) this request's spend is booked to."""
        return _period(int(self.started // 86400))

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
