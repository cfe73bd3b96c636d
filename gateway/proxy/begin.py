"""The request path, top to bottom: everything before the first upstream byte.

    authenticate -> parse -> identify the task -> plan a route
        -> call the upstream (retries, fallbacks) -> account -> respond

Every upstream attempt, failed or not, is handed to the accountant. Errors are
raised as :mod:`gateway.errors` exceptions; the app turns them into responses.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from gateway.accounting.pricing import PICO
from gateway.config.load import Config, Tenant
from gateway.edge.auth import authenticate
from gateway.edge.http import Request, parse_json_object
from gateway.errors import BadRequest, NotFound, ServiceUnavailable
from gateway.proxy import tasks
from gateway.proxy.router import denial_error
from policies.decide import Decision
from providers.base import Deployment, Usage


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
