"""The attempt loop's bookkeeping: the schedule of (deployment, retry) pairs and what
happens before and after each upstream attempt."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Iterator

from gateway.accounting.records import AttemptRecord
from gateway.config.load import Config
from gateway.proxy.begin import Call
from policies.decide import DEFAULT_ROUTING, Decision, still_allowed
from policies.health import BreakerState, availability, backoff, retryable
from policies.schema import BreakerSettings
from providers import ADAPTERS
from providers.base import Adapter, Deployment, UpstreamFailure, Unsupported, Usage

log = logging.getLogger("taskgate.proxy")


class Schedule:
    """(deployment, retry number) pairs in the order to try them, minus skipped deployments.

    Only the decision's deployments are ever scheduled, so a retry or a fallback
    cannot reach a deployment that policy excluded; :meth:`usable` checks again
    (compliance and the breaker) right before each attempt.
    """

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.items = [(dep, retry) for dep in decision.ordered for retry in range(dep.max_retries + 1)]
        self.skip: set[str] = set()
        self._next = 0

    def __iter__(self) -> Iterator[tuple[Deployment, int]]:
        while self._next < len(self.items):
            dep, retry = self.items[self._next]
            self._next += 1
            if dep.id not in self.skip:
                yield dep, retry

    def has_more(self) -> bool:
        return any(dep.id not in self.skip for dep, _ in self.items[self._next:])


def next_step(failure: UpstreamFailure, retry: int, dep: Deployment) -> str:
    """What to do after a failed attempt: "retry" the same, try the "next", or "stop"."""
    rule = retryable(failure.reason)
    if rule.retry_same and retry < dep.max_retries:
        return "retry"
    if rule.try_next:
        return "next"
    return "stop"


def retry_delay(config: Config, retry: int) -> float:
    settings = (config.policies.routing or DEFAULT_ROUTING).retries
    return backoff(retry, settings.backoff_base_s, settings.backoff_max_s, random.random())


class Attempts:
    """Runs the schedule for one call; subclasses (streaming) reuse the bookkeeping."""

    def __init__(self, gw: Any, call: Call, decision: Decision) -> None:
        self.gw = gw
        self.call = call
        self.schedule = Schedule(decision)
        self.unsupported: Unsupported | None = None  # a deployment could not take the request

    async def admit(self) -> None:
        """Before the first upstream byte: the store check and the budget reservation."""
        call = self.call
        if call.admitted:
            return
        call.admitted = True
        await self.gw.admit(call, self.schedule)

    def record(self, dep: Deployment, started: float, t0: float, outcome: str, status: int,
               failure: UpstreamFailure | None, usage: Usage | None, usage_source: str,
               final: bool, ttft: float | None = None, waste_reason: str | None = None) -> int | None:
        call = self.call
        elapsed = time.monotonic() - t0
        cost = self.gw.cost(dep, usage, elapsed) if usage is not None else (0 if usage_source == "none" else None)
        rec = AttemptRecord(
            request_id=call.request_id, attempt=call.attempts, task_id=call.task.id, task_type=call.task.type,
            tenant=call.tenant.name, operation=call.operation, model=call.model, deployment=dep.id,
            provider=dep.kind, outcome=outcome, status=status,
            error_reason=failure.reason.value if failure else None, usage=usage, usage_source=usage_source,
            cost_picousd=cost, started_at=started, duration_s=elapsed, ttft_s=ttft, final=final,
            waste_reason=waste_reason,
            end_outcome=("succeeded" if outcome == "ok" else "failed") if final and call.task.generated else None,
            reserved_picousd=call.reserved_picousd if final else None,
            budget_picousd=call.budget_picousd if call.attempts == 0 else None,
            spend_period=call.period,
        )
        call.attempts += 1
        call.cost_picousd += cost or 0
        self.gw.accountant.attempt(rec)
        return cost

    async def prepare(self, dep: Deployment, stream: bool) -> Any | None:
        """Everything before an attempt: the upstream request, the policy and breaker checks, the
        budget reservation. None when this deployment is to be skipped."""
        try:
            up_req = self.build(ADAPTERS[dep.kind], dep, stream)
        except Unsupported as exc:
            self.unsupported = exc
            self.schedule.skip.add(dep.id)
            return None
        if not self.usable(dep):
            self.schedule.skip.add(dep.id)
            return None
        await self.admit()
        self.started(dep)
        return up_req

    def build(self, adapter: Adapter, dep: Deployment, stream: bool) -> Any:
        call = self.call
        if call.operation == "chat":
            return adapter.chat_request(dep, call.body, stream)
        return adapter.embeddings_request(dep, call.body)

    async def failed(self, dep: Deployment, retry: int, started: float, t0: float,
                     failure: UpstreamFailure, usage: Usage | None = None, usage_source: str = "none") -> str:
        step = next_step(failure, retry, dep)
        if step == "next":
            self.schedule.skip.add(dep.id)
        if step != "stop" and not self.schedule.has_more():
            step = "stop"
        waste = {"retry": "retry", "next": "fallback"}.get(step)
        self.record(dep, started, t0, "error", failure.status, failure, usage, usage_source,
                    final=step == "stop", waste_reason=waste)
        log.warning("deployment %s failed (%s %s): %s; next: %s", dep.id, failure.reason.value, failure.status,
                    failure.message, step)
        self.gw.health.failed(dep, failure, self.breaker_settings)
        if step == "retry":
            await asyncio.sleep(retry_delay(self.call.config, retry))
        return step

    @property
    def breaker_settings(self) -> BreakerSettings:
        routing = self.call.config.policies.routing
        return (routing or DEFAULT_ROUTING).breaker

    def usable(self, dep: Deployment) -> bool:
        """Right before an attempt: still compliant (always, by construction) and its breaker lets it through."""
        if not still_allowed(self.schedule.decision, dep):
            log.error("deployment %s is not allowed for this request; skipped", dep.id)
            return False
        return availability(self.gw.health.breakers.get(dep.id, BreakerState()), time.time(),
                            self.breaker_settings).usable

    def started(self, dep: Deployment) -> None:
        self.gw.health.attempt_started(dep)

    def succeeded(self, dep: Deployment, t0: float, ttft: float | None = None) -> None:
        routing = self.call.config.policies.routing
        alpha = routing.for_model(self.call.model).alpha if routing else 0.3
        self.gw.health.succeeded(dep, time.monotonic() - t0, ttft, alpha)
