"""The request path, top to bottom.

    authenticate -> parse -> identify the task -> plan a route
        -> call the upstream (retries, fallbacks) -> account -> respond

Every upstream attempt, failed or not, is handed to the accountant. Errors are
raised as :mod:`gateway.errors` exceptions; the app turns them into responses.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import os
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
from typing import Any, Iterator

from gateway import tasks
from gateway.auth import authenticate
from gateway.config import Config, Tenant
from gateway.errors import BadRequest, GatewayError, NotFound, ServiceUnavailable, from_upstream
from gateway.http import Request, Send, parse_json_object, send_bytes
from gateway.pricing import PICO, format_usd
from gateway.records import AttemptRecord
from gateway.upstream import UpstreamCallError
from gateway.router import denial_error
from policies.decide import DEFAULT_ROUTING, Decision, still_allowed
from policies.health import BreakerState, availability, backoff, retryable
from policies.schema import BreakerSettings
from providers import ADAPTERS
from providers.base import Adapter, Deployment, FailureReason, UpstreamFailure, Unsupported, Usage

log = logging.getLogger("taskgate.proxy")



@dataclass(slots=True)
class Call:
    """One client request as it moves through the path."""

    request_id: str
    operation: str  # "chat" or "embeddings"
    tenant: Tenant
    task: tasks.TaskRef
    model: str
    body: dict[str, Any]
    config: Config
    started: float = field(default_factory=time.time)
    attempts: int = 0
    cost_picousd: int = 0
    budget_picousd: int | None = None  # the task's budget, from X-Task-Budget-USD or the task type
    reserved_picousd: int = 0  # reserved against budgets before the first attempt; released by the last
    admitted: bool = False

    @property
    def period(self) -> tuple[str, str]:
        """The UTC (day, month) this request's spend is booked to."""
        t = time.gmtime(self.started)
        return time.strftime("%Y%m%d", t), time.strftime("%Y%m", t)

    def response_headers(self, dep: Deployment) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-task-id", self.task.id.encode()),
            (b"x-request-id", self.request_id.encode()),
            (b"x-taskgate-deployment", dep.id.encode()),
        ]


async def begin(gw: Any, req: Request, operation: str) -> tuple[Call, Decision]:
    """Everything that happens before the first upstream byte is sent."""
    config = gw.config  # this request keeps this config to its end, whatever a reload does
    tenant = authenticate(req.headers, config.keys)
    body = parse_json_object(req.body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string", param="model", code="missing_model")
    task = tasks.identify(req.headers, body)
    req.task_id = task.id
    group = config.groups.get(model)
    if group is None:
        raise NotFound(f"the model '{model}' does not exist; GET /v1/models lists the models",
                       param="model", code="model_not_found")
    if not group:
        reasons = "; ".join(d.reason for d in config.disabled if d.model_name == model)
        raise ServiceUnavailable(f"the model '{model}' has no enabled deployment: {reasons}", code="no_deployment")
    call = Call(os.urandom(16).hex(), operation, tenant, task, model, body, config)
    call.budget_picousd = task_budget(config, task.type, req.headers.get("x-task-budget-usd"))
    remaining = None
    if call.budget_picousd is not None and config.policies.routing is not None \
            and config.policies.routing.for_model(model).strategy == "budget":
        remaining = call.budget_picousd - await gw.ledger.task_spent(tenant.name, task.id)
    decision = gw.router.decide(config, tenant.name, model, group, body, req.headers.get("x-data-class"), remaining,
                                dry_run=req.dry_run)
    if not req.dry_run:
        gw.router.account(decision, task.id, tenant.name)
    if decision.denial is not None and not req.dry_run:
        raise denial_error(decision.denial)
    call.body = dict(decision.body)  # redacted where the data class says so
    return call, decision


def task_budget(config: Config, task_type: str, header: str | None) -> int | None:
    """The task's budget in pico-dollars: ``X-Task-Budget-USD``, else the task type's default."""
    if header:
        try:
            value = Decimal(header)
        except ArithmeticError:
            value = Decimal(-1)
        if not value.is_finite() or value <= 0:
            raise BadRequest("X-Task-Budget-USD must be a positive number of USD", param="X-Task-Budget-USD",
                             code="invalid_budget")
        return int(value * PICO)
    ttype = config.tasks.types.get(task_type)
    return int(ttype.budget_usd * PICO) if ttype and ttype.budget_usd is not None else None


def worst_case_usage(body: dict[str, Any], default_max_output: int) -> Usage:
    """A safe upper bound of a request's tokens, for budget reservations (no tokenizer on the hot path)."""
    prompt = body.get("messages") if "messages" in body else body.get("input")
    prompt_tokens = len(orjson.dumps(prompt)) // 3 + 16  # a token is rarely under 3 bytes of JSON
    max_out = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_output
    return Usage(input_tokens=prompt_tokens, output_tokens=int(max_out) if isinstance(max_out, int) else default_max_output)


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


async def unary(gw: Any, call: Call, decision: Decision, send: Send) -> None:
    """A non-streaming chat completion or embeddings request."""
    attempts = Attempts(gw, call, decision)
    last: tuple[Deployment, UpstreamFailure] | None = None
    for dep, retry in attempts.schedule:
        up_req = await attempts.prepare(dep, stream=False)
        if up_req is None:
            continue
        adapter = ADAPTERS[dep.kind]
        started, t0 = time.time(), time.monotonic()
        try:
            reply = await gw.upstream.call(dep, up_req)
            if reply.status >= 400:
                failure = adapter.error(dep, reply.status, reply.headers, reply.body)
            else:
                out, usage = _parse(adapter, dep, call, reply.body)
                attempts.succeeded(dep, t0)
                cost = attempts.record(dep, started, t0, "ok", reply.status, None, usage, "provider", final=True)
                headers = call.response_headers(dep)
                headers.append((b"x-request-cost-usd", format_usd(cost).encode() if cost is not None else b"0"))
                if cost is None:
                    headers.append((b"x-request-cost-source", b"unpriced"))
                await send_bytes(send, 200, out, headers)
                return
        except UpstreamCallError as exc:
            failure = exc.failure
        except (ValueError, KeyError, TypeError) as exc:
            failure = UpstreamFailure(FailureReason.PROTOCOL, 200, f"unreadable upstream response ({exc})")
        last = (dep, failure)
        if await attempts.failed(dep, retry, started, t0, failure) == "stop":
            break
    raise final_error(last, attempts.unsupported)


def _parse(adapter: Adapter, dep: Deployment, call: Call, raw: bytes) -> tuple[bytes, Usage]:
    if call.operation == "chat":
        return adapter.chat_response(dep, raw)
    return adapter.embeddings_response(dep, raw, call.body.get("encoding_format"))


def final_error(last: tuple[Deployment, UpstreamFailure] | None, unsupported: Unsupported | None) -> GatewayError:
    if last is not None:
        return from_upstream(*last)
    if unsupported is not None:
        return BadRequest(str(unsupported), code="unsupported_parameter")
    return ServiceUnavailable("no deployment could take the request", code="no_deployment")
