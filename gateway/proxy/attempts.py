"""The one attempt loop, for unary and streamed calls alike.

For each (deployment, retry) of the decision's schedule, in order:

    still allowed by policy? breaker lets it through?      else skip the deployment
    the adapter can honour every parameter?               else skip (400 if none can)
    first attempt only: store check, budget reservation    429 budget_exceeded / 503
    the exchange runs the attempt                           (unary.py, streaming.py)
    every attempt becomes one record                        (accounting, ledger)
    success -> deliver;  failure -> retry / next deployment / stop

An *exchange* is what differs between a unary and a streamed call: how one
attempt talks to the transport and what the client is sent. Everything else —
the schedule, the breaker and policy checks, admission, records, the retry and
fallback decisions, and accounting an attempt that was cancelled — is here,
once. Tests drive this loop in-process through a scripted transport.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, replace
from typing import Iterator, Protocol

from gateway.accounting.estimate import may_reason, worst_case_usage
from gateway.accounting.pricing import cost_picousd
from gateway.accounting.records import AttemptRecord
from gateway.ledger.encode import INTERRUPTED_ATTEMPT
from gateway.errors import BadRequest, GatewayError, ServiceUnavailable, from_upstream, redacted_failure
from gateway.proxy.call import Call
from gateway.services import Services
from policies.capabilities import unsupported_params
from policies.decide import DEFAULT_ROUTING, Decision, still_allowed
from policies.health import BreakerState, availability, backoff, retryable
from policies.schema import BreakerSettings
from providers import ADAPTERS
from providers.adapter import Adapter
from providers.base import (
    Deployment,
    Unsupported,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
)

log = logging.getLogger("taskgate.proxy")
DEFAULT_ALPHA = 0.3  # latency EWMA weight when no routing section sets one


@dataclass(frozen=True, slots=True)
class Attempted:
    """What one attempt came to."""

    failure: UpstreamFailure | None  # None: it succeeded
    usage: Usage | None = None
    usage_source: str = "none"  # provider | estimated | none
    ttft: float | None = None  # streams: seconds to the first event
    committed: bool = False  # the client already has bytes of this attempt: no failover
    lower_bound: bool = False  # an estimate that may miss tokens (hidden reasoning of a cancelled stream)


class Exchange(Protocol):
    """How one attempt of a call talks upstream and what its client gets."""

    def upstream_request(self, adapter: Adapter, dep: Deployment) -> UpstreamRequest:
        """The upstream request (raises Unsupported when the adapter cannot build it)."""
        ...

    async def attempt(self, adapter: Adapter, dep: Deployment, up_req: UpstreamRequest) -> Attempted: ...

    async def deliver(self, dep: Deployment, cost: int | None) -> None:
        """After a successful attempt is recorded: the rest of the response."""
        ...

    async def abort(self, dep: Deployment, err: GatewayError) -> None:
        """After a committed attempt failed: tell the client in-band."""
        ...

    def interrupted(self) -> tuple[Usage | None, str]:
        """The usage (and its source) of the attempt in progress, when it is cancelled."""
        ...


class Schedule:
    """(deployment, retry number) pairs in the order to try them, minus skipped deployments.

    Only the decision's deployments are ever scheduled, so a retry or a fallback
    cannot reach a deployment that policy excluded; the loop checks again
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


def final_error(last: tuple[Deployment, UpstreamFailure] | None, unsupported: Unsupported | None) -> GatewayError:
    if last is not None:
        return from_upstream(*last)
    if unsupported is not None:
        return BadRequest(str(unsupported), code="unsupported_parameter")
    return ServiceUnavailable("no deployment could take the request", code="no_deployment")


class AttemptLoop:
    def __init__(self, call: Call, decision: Decision, services: Services, exchange: Exchange) -> None:
        self.call = call
        self.services = services
        self.exchange = exchange
        self.schedule = Schedule(decision)
        configured = call.snapshot.config.policies.routing
        routing = configured or DEFAULT_ROUTING
        self.breaker: BreakerSettings = routing.breaker
        self.retries = routing.retries
        self.alpha = configured.for_model(call.model).alpha if configured else DEFAULT_ALPHA
        self.attempts = 0  # records made so far
        self.cost_picousd = 0
        self.tokens = 0  # input + output tokens of every attempt, for the TPM settlement
        self.reserved_picousd = 0  # reserved against budgets before the first attempt; released by the last
        self.admitted = False
        self.unsupported: Unsupported | None = None  # a deployment could not take the request
        self.current: tuple[Deployment, float, float] | None = None  # the attempt in flight

    async def run(self) -> None:
        """Runs the schedule to a delivered answer, or raises the error for the client."""
        try:
            await self._run()
        except GatewayError as err:
            err.task_id = err.task_id or self.call.task.id
            raise
        finally:  # every path (delivered, failed, fell back, cancelled): TPM counts what was used
            self.services.ledger.limits.settle(self.call.grant, self.tokens)

    async def _run(self) -> None:
        last: tuple[Deployment, UpstreamFailure] | None = None
        for dep, retry in self.schedule:
            adapter = ADAPTERS[dep.kind]
            up_req = await self._prepare(adapter, dep)
            if up_req is None:
                continue
            started, t0 = time.time(), time.monotonic()
            self.current = (dep, started, t0)
            try:
                result = await self.exchange.attempt(adapter, dep, up_req)
            except asyncio.CancelledError:
                self._interrupted()
                raise
            self.current = None
            if result.failure is not None:  # no secret fragment reaches a log, the ledger or the client
                result = replace(result, failure=redacted_failure(dep, result.failure))
            if result.failure is None:
                self.services.health.succeeded(dep, time.monotonic() - t0, result.ttft, self.alpha)
                cost = self._record(dep, started, t0, "ok", 200, result, final=True)
                await self.exchange.deliver(dep, cost)
                return
            failure = result.failure
            if result.committed:  # too late to fail over: tell the client in-band
                self.services.health.failed(dep, failure, self.breaker)
                self._record(dep, started, t0, "dropped", failure.status, result, final=True)
                await self.exchange.abort(dep, from_upstream(dep, failure))
                return
            last = (dep, failure)
            if await self._failed(dep, retry, started, t0, result) == "stop":
                break
        raise final_error(last, self.unsupported)

    # --- before an attempt ---------------------------------------------------------

    async def _prepare(self, adapter: Adapter, dep: Deployment) -> UpstreamRequest | None:
        """The upstream request, or None when this deployment is to be skipped."""
        missing = unsupported_params(self.call.params, self.call.snapshot.facts[dep.id])
        try:
            if missing:  # the router never schedules this; defence in depth
                raise Unsupported(dep.kind, f"the parameter(s) {', '.join(missing)}")
            up_req = self.exchange.upstream_request(adapter, dep)
        except Unsupported as exc:
            self.unsupported = exc
            self.schedule.skip.add(dep.id)
            return None
        if not self._usable(dep):
            self.schedule.skip.add(dep.id)
            return None
        if not self.admitted:
            self.admitted = True
            await self._admit(dep)
        self.services.health.attempt_started(dep)
        return up_req

    def _usable(self, dep: Deployment) -> bool:
        """Right before an attempt: still compliant (always, by construction) and its breaker lets it through."""
        if not still_allowed(self.schedule.decision, dep):
            log.error("deployment %s is not allowed for this request; skipped", dep.id)
            return False
        state = self.services.health.breakers.get(dep.id, BreakerState())
        return availability(state, time.time(), self.breaker).usable

    async def _admit(self, first: Deployment) -> None:
        """Before the first upstream byte: refuse when failing closed, reserve budgets, and leave
        the ledger an intent: what to record if this request never records its final attempt."""
        call, ledger = self.call, self.services.ledger
        config = call.snapshot.config
        ledger.check_available()
        worst = call.worst or worst_case_usage(call.request.body, config.budgets.default_max_output_tokens)
        key_budgets = call.key_budgets
        if call.budget_picousd is not None or call.tenant.name in config.budgets.tenants \
                or any(limit is not None for _, limit in key_budgets):
            amounts = [cost_picousd(worst, price, dep.timeout) for dep, _ in self.schedule.items
                       if (price := call.snapshot.price(dep)) is not None]
            amount = max(amounts, default=0)
            if await ledger.reserve(call.tenant.name, call.task.id, amount, call.budget_picousd, call.period,
                                    config.budgets, key_budgets):
                self.reserved_picousd = amount
        ledger.intent(self._interrupted_record(first, Usage(input_tokens=worst.input_tokens)))

    def _interrupted_record(self, dep: Deployment, estimate: Usage) -> AttemptRecord:
        """The record of this request if it is interrupted before its final record: the prompt as
        estimated before the first byte (no output known), priced, marked estimated and interrupted."""
        call = self.call
        price = call.snapshot.price(dep)
        return AttemptRecord(
            request_id=call.request_id, attempt=INTERRUPTED_ATTEMPT, task_id=call.task.id, task_type=call.task.type,
            tenant=call.tenant.name, operation=call.operation, model=call.model, deployment=dep.id,
            provider=dep.kind, outcome="interrupted", status=0, error_reason="interrupted", usage=estimate,
            usage_source="estimated", cost_picousd=None if price is None else cost_picousd(estimate, price),
            started_at=time.time(), duration_s=0.0, final=True, waste_reason="interrupted",
            end_outcome="failed" if call.task.generated else None, one_request=call.task.generated,
            reserved_picousd=self.reserved_picousd, budget_picousd=call.budget_picousd, spend_period=call.period,
            **call.attribution)

    # --- after an attempt ------------------------------------------------------------

    async def _failed(self, dep: Deployment, retry: int, started: float, t0: float, result: Attempted) -> str:
        failure = result.failure
        assert failure is not None
        step = next_step(failure, retry, dep)
        if step == "next":
            self.schedule.skip.add(dep.id)
        if step != "stop" and not self.schedule.has_more():
            step = "stop"
        waste = {"retry": "retry", "next": "fallback"}.get(step)
        self._record(dep, started, t0, "error", failure.status, result, final=step == "stop", waste_reason=waste)
        log.warning("deployment %s failed (%s %s): %s; next: %s", dep.id, failure.reason.value, failure.status,
                    failure.message, step)
        self.services.health.failed(dep, failure, self.breaker)
        if step == "retry":
            await asyncio.sleep(backoff(retry, self.retries.backoff_base_s, self.retries.backoff_max_s,
                                        random.random()))
        return step

    def _interrupted(self) -> None:
        """The call was cancelled (the client went away): account the attempt in progress."""
        if self.current is None:
            return
        dep, started, t0 = self.current
        self.current = None
        usage, source = self.exchange.interrupted()
        self._record(dep, started, t0, "cancelled", 0, Attempted(None, usage, source), final=True,
                     waste_reason="cancelled")

    def _record(self, dep: Deployment, started: float, t0: float, outcome: str, status: int, result: Attempted,
                final: bool, waste_reason: str | None = None) -> int | None:
        call = self.call
        elapsed = time.monotonic() - t0
        usage = result.usage
        price = call.snapshot.price(dep)
        failure = result.failure
        if usage is None:
            # no tokens to bill, but a per-second (GPU-hour) deployment still spent its seconds
            seconds = price is not None and price.per_second > 0
            cost: int | None = (cost_picousd(Usage(), price, elapsed) if price is not None and seconds
                                else 0 if result.usage_source == "none" else None)
        else:
            search = call.request.body.get("web_search_options") if outcome == "ok" else None
            cost = None if price is None else cost_picousd(
                usage, price, elapsed, search_queries=1 if isinstance(search, dict) else 0,
                search_context_size=search.get("search_context_size") if isinstance(search, dict) else None)
        if failure is not None and not waste_reason and cost:
            waste_reason = "failed"  # billed (seconds, or tokens the provider reported) and nothing delivered
        rec = AttemptRecord(
            request_id=call.request_id, attempt=self.attempts, task_id=call.task.id, task_type=call.task.type,
            tenant=call.tenant.name, operation=call.operation, model=call.model, deployment=dep.id,
            provider=dep.kind, outcome=outcome, status=status,
            error_reason=failure.reason.value if failure else None, usage=usage, usage_source=result.usage_source,
            cost_picousd=cost, started_at=started, duration_s=elapsed, ttft_s=result.ttft, final=final,
            usage_lower_bound=result.lower_bound or (result.usage_source == "estimated"
                                                     and may_reason(dep.model, call.request.body)),
            waste_reason=waste_reason,
            end_outcome=("succeeded" if outcome == "ok" else "failed") if final and call.task.generated else None,
            one_request=call.task.generated,
            reserved_picousd=self.reserved_picousd if final else None,
            budget_picousd=call.budget_picousd if self.attempts == 0 else None,
            spend_period=call.period,
            **call.attribution,
        )
        self.attempts += 1
        self.cost_picousd += cost or 0
        self.tokens += usage.input_tokens + usage.output_tokens if usage is not None else 0
        self.services.accountant.attempt(rec)
        return cost
