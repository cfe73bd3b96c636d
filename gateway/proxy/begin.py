"""Everything that happens before the first upstream byte is sent.

    (the edge: authenticate, parse JSON) -> the front's canonical request
        -> identify the task -> find the model -> the task's budget
        -> decide a route (policies) -> the Call

The request takes the snapshot current when it arrives and keeps it to its end.
Errors are raised as :mod:`gateway.errors` exceptions; once the task is known,
they carry its id so that the error response names it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from gateway.accounting.estimate import worst_case_usage
from gateway.accounting.pricing import PICO
from gateway.config.identity import Tenant
from gateway.config.load import Config
from gateway.errors import BadRequest, GatewayError, NotFound, PolicyDenied, ServiceUnavailable
from gateway.fronts.base import ChatFront, EmbeddingsFront
from gateway.ledger.ledger import Ledger
from gateway.ledger.limiter import Grant
from gateway.proxy import tasks
from gateway.proxy.call import Call
from gateway.proxy.router import Router, denial_error
from gateway.snapshot import Snapshot
from policies.decide import Decision
from providers.base import Usage
from providers.canonical import ChatRequest, EmbeddingsRequest

MAX_BUDGET_DIGITS = 32  # a budget header longer than this is not a budget
BUDGET = re.compile(r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]{1,2})?|\.[0-9]+")  # a plain decimal, small exponent


async def begin(snapshot: Snapshot, router: Router, ledger: Ledger, tenant: Tenant, headers: Mapping[str, str],
                body: dict[str, Any], front: ChatFront | EmbeddingsFront, *,
                explain: bool = False, chain: str | None = None) -> tuple[Call, Decision]:
    """The Call and its route, for an authenticated ``tenant``'s parsed ``body``.
    ``explain`` (``/v1/route/explain``) decides in full and neither counts, audits nor denies.
    ``chain``: the task of the stored response that a Responses request continues."""
    config = snapshot.config
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string", param="model", code="missing_model")
    if tenant.models is not None and model not in tenant.models:  # a key scoped to some models (gateway/keys/)
        raise PolicyDenied(f"this key may not use the model '{model}'", param="model", code="model_not_allowed")
    task = tasks.identify(headers, body, chain)
    grant: Grant | None = None
    try:
        request = front.parse(body)
        worst = WorstCase(request.body, config.budgets.default_max_output_tokens)
        group = config.groups.get(model)
        wild_reasons: tuple[str, ...] = ()
        if group is None:
            wild = snapshot.wildcard_group(model)  # model_name "*" or "provider/*"
            if wild is None:
                raise NotFound(f"the model '{model}' does not exist; GET /v1/models lists the models",
                               param="model", code="model_not_found")
            group, wild_reasons = wild
        if not group:
            reasons = "; ".join(wild_reasons or [d.reason for d in config.disabled if d.model_name == model])
            raise ServiceUnavailable(f"the model '{model}' has no enabled deployment: {reasons}",
                                     code="no_deployment")
        budget = task_budget(config, task.type, headers.get("x-task-budget-usd"))
        if not task.generated and "x-task-budget-usd" not in headers:
            # a task opened with POST /v1/tasks {"max_cost_usd"} holds every request to its budget
            budget = await ledger.opened.budget(tenant.name, task.id) or budget
        remaining = None
        if budget is not None and config.policies.routing is not None \
                and config.policies.routing.for_model(model).strategy == "budget":
            remaining = budget - await ledger.task_spent(tenant.name, task.id)
        params = request.params if isinstance(request, ChatRequest) else frozenset()
        decision = router.decide(snapshot, tenant.name, model, group, request.body, headers.get("x-data-class"),
                                 remaining, params, explain=explain, task_type=task.type)
        if not explain:
            router.account(decision, task.id, tenant.name)
            if decision.denial is not None:
                raise denial_error(decision.denial)
            grant = await ledger.limits.admit(tenant, config, lambda: worst_tokens(worst, request))
    except GatewayError as err:
        err.task_id = task.id
        raise
    redacted: ChatRequest | EmbeddingsRequest = request
    if decision.body is not request.body:  # policy gave a body of its own (redacted, or rebuilt)
        redacted = replace(request, body=dict(decision.body))  # type: ignore[arg-type]
        worst.usage = None  # admission's worst case was of the client's body, not of what goes upstream
        if isinstance(redacted, ChatRequest) and redacted.native is not None and decision.body != request.body:
            redacted = replace(redacted, native=None)  # policy changed what goes upstream: never the original
    operation = front.name  # the client API: chat, responses, messages or embeddings
    return Call(tasks.unique_hex(), operation, tenant, task, model, redacted, snapshot, budget,
                grant=grant, worst=worst.usage), decision


class WorstCase:
    """A request body's worst-case usage, computed once when first asked for: admission's TPM
    charge, then (through the Call) the attempt loop's budget reservation."""

    __slots__ = ("body", "default_max_output", "usage")

    def __init__(self, body: Mapping[str, Any], default_max_output: int) -> None:
        self.body, self.default_max_output = body, default_max_output
        self.usage: Usage | None = None

    def get(self) -> Usage:
        if self.usage is None:
            self.usage = worst_case_usage(self.body, self.default_max_output)
        return self.usage


def worst_tokens(worst: WorstCase, request: ChatRequest | EmbeddingsRequest) -> int:
    """A request's tokens at most, for TPM at admission: the bound the budget reservation uses
    (prompt JSON bytes / 3, plus max_tokens or budgets.default_max_output_tokens, times n)."""
    usage = worst.get()
    return usage.input_tokens + (usage.output_tokens if isinstance(request, ChatRequest) else 0)


def task_budget(config: Config, task_type: str, header: str | None) -> int | None:
    """The task's budget in pico-dollars: ``X-Task-Budget-USD``, else the task type's default."""
    if header:
        try:  # plain decimal notation only: no "1_000", "NaN", "Infinity", spaces or 5,000 digits
            value = Decimal(header) if len(header) <= MAX_BUDGET_DIGITS and BUDGET.fullmatch(header) \
                else Decimal(-1)
        except (ArithmeticError, InvalidOperation):
            value = Decimal(-1)
        if not value.is_finite() or value <= 0 or value > 10**9:
            raise BadRequest("X-Task-Budget-USD must be a positive number of USD, at most 1e9",
                             param="X-Task-Budget-USD", code="invalid_budget")
        return int(value * PICO)
    ttype = config.tasks.types.get(task_type)
    return int(ttype.budget_usd * PICO) if ttype and ttype.budget_usd is not None else None
