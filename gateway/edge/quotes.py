"""Quotes, tasks opened ahead of their first request, and reports by model path.

    GET  /v1/quotes?task_type=T[&window=7d | &since=&until=][&margin=0.3][&tenant=]
    POST /v1/tasks   {"task_id"?, "task_type"?, "max_cost_usd"?}   201: the task and its quote
    GET  /v1/reports/models[?since=&until=|&window=][&task_type=]   (also /v1/reports/tasks?by=model)

The statistics are pure (:mod:`gateway.accounting.quotes`); the history is read from
the ledger (:mod:`gateway.ledger.history`). See docs/CONTRACT-EXTENSIONS.md.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.accounting.pricing import PICO
from gateway.accounting.quotes import QuoteSettings, by_model_path, quote
from gateway.config.load import Config
from gateway.edge.limits import json_body, read_raw, time_query
from gateway.errors import BadRequest
from gateway.ledger.history import ended_tasks, open_task
from gateway.ledger.ledger import Ledger
from gateway.proxy.tasks import TASK_ID, TASK_TYPE
from gateway.snapshot import CurrentSnapshot

WINDOW = re.compile(r"([0-9]{1,6}(?:\.[0-9]{1,3})?)([smhd])")
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_USD = Decimal(10) ** 9
TASK_FIELDS = ("task_id", "task_type", "max_cost_usd")
OPEN_TASK_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False,
    "properties": {
        "task_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$",
                    "description": "default: task-<32 hex>"},
        "task_type": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$",
                      "description": "the task type, whose quote is returned"},
        "max_cost_usd": {"anyOf": [{"type": "string"}, {"type": "number"}],
                         "description": "the task's budget in USD, a decimal string or a number, 0 < x <= 1e9"}}}}}}


def period(config: Config, window: str | None, since: float | None, until: float | None,
           now: float) -> tuple[float, float]:
    """The history's window: ``window`` (e.g. ``7d``, ``24h``) back from ``until`` (default now),
    or ``since``..``until``; by default ``quotes.window_days``."""
    until = now if until is None else until
    if window is not None:
        if since is not None:
            raise BadRequest("give 'window' or 'since', not both", param="window", code="invalid_period")
        found = WINDOW.fullmatch(window)
        if not found or float(found.group(1)) <= 0:
            raise BadRequest("'window' is a positive duration such as 30m, 24h or 7d", param="window",
                             code="invalid_window")
        since = until - float(found.group(1)) * UNIT[found.group(2)]
    since = until - config.quotes.window_days * 86400 if since is None else since
    if since > until:
        raise BadRequest("'since' is after 'until'", param="since", code="invalid_period")
    return since, until


def margin_of(config: Config, task_type: str, given: str | None) -> tuple[Decimal, str]:
    """The target margin and where it came from: ``?margin=``, the type's, or the default."""
    if given is not None:
        try:
            value = Decimal(given) if len(given) <= 20 else Decimal(-1)
        except InvalidOperation:
            value = Decimal(-1)
        if not value.is_finite() or not 0 <= value < 1:
            raise BadRequest("'margin' is a fraction of the price, 0 <= margin < 1 (e.g. 0.3)", param="margin",
                             code="invalid_margin")
        return value, "request"
    ttype = config.tasks.types.get(task_type)
    if ttype is not None and ttype.margin is not None:
        return ttype.margin, f"tasks.types.{task_type}.margin"
    return config.quotes.default_margin, "quotes.default_margin"


async def quote_for(config: Config, ledger: Ledger, tenant: str, task_type: str, since: float, until: float,
                    margin: str | None = None) -> dict[str, Any]:
    target, source = margin_of(config, task_type, margin)
    q = config.quotes
    await ledger.flush()
    history = await ended_tasks(ledger.redis, tenant, task_type, since, until, q.max_samples)
    settings = QuoteSettings(margin=target, confidence=q.confidence, resamples=q.resamples, seed=q.seed,
                             min_ended=q.min_ended, min_succeeded=q.min_succeeded)
    # the bootstrap is CPU work (about 0.8 s for 5,000 tasks x 1,000 resamples): off the event loop
    out = await asyncio.to_thread(quote, [s for _, s in history], settings)
    ttype = config.tasks.types.get(task_type)
    price = ttype.price_usd if ttype is not None else None
    return {"object": "quote", "tenant": tenant, "task_type": task_type, "since": since, "until": until,
            "at": time.time(), "margin_source": source, "sample_cap": q.max_samples,
            "configured_price_usd": format(price, "f") if price is not None else None, **out}


def budget_of(value: Any) -> int:
    """``max_cost_usd`` (a decimal string or a JSON number) in pico-dollars."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRequest("'max_cost_usd' must be a decimal string or a number of USD", param="max_cost_usd",
                         code="invalid_budget")
    try:
        amount = Decimal(str(value)) if len(str(value)) <= 40 else Decimal(-1)
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or amount * PICO < 1 or amount > MAX_USD:
        raise BadRequest("'max_cost_usd' must be a positive number of USD, at most 1e9", param="max_cost_usd",
                         code="invalid_budget")
    return int(amount * PICO)


def parse_open(body: Any) -> tuple[str, str | None, int | None]:
    """(task id, task type or None, budget or None) from a ``POST /v1/tasks`` body."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_body")
    for key in body:
        if key not in TASK_FIELDS:
            raise BadRequest(f"unknown field '{key}'; the fields are {', '.join(TASK_FIELDS)}", param=str(key),
                             code="unknown_parameter")
    task_id, task_type = body.get("task_id"), body.get("task_type")
    if task_id is not None and (not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id)):
        raise BadRequest("'task_id' is 1 to 128 characters of A-Za-z0-9._:-", param="task_id",
                         code="invalid_task_id")
    if task_type is not None and (not isinstance(task_type, str) or not TASK_TYPE.fullmatch(task_type)):
        raise BadRequest("'task_type' is 1 to 64 characters of A-Za-z0-9._:-", param="task_type",
                         code="invalid_task_type")
    budget = budget_of(body["max_cost_usd"]) if body.get("max_cost_usd") is not None else None
    return task_id or "task-" + uuid.uuid4().hex, task_type, budget


def mount_quotes(api: FastAPI, snapshots: CurrentSnapshot, ledger: Ledger,
                 scope_tenant: Callable[[Request, str | None], Awaitable[str]]) -> None:
    @api.get("/v1/quotes")
    async def get_quote(request: Request, task_type: str | None = None, tenant: str | None = None,
                        window: str | None = None, since: float | None = time_query(),
                        until: float | None = time_query(), margin: str | None = None) -> dict[str, Any]:
        who = await scope_tenant(request, tenant)
        if not task_type or not TASK_TYPE.fullmatch(task_type):
            raise BadRequest("'task_type' is required: 1 to 64 characters of A-Za-z0-9._:-", param="task_type",
                             code="invalid_task_type")
        config = snapshots.config
        low, high = period(config, window, since, until, time.time())
        return await quote_for(config, ledger, who, task_type, low, high, margin)

    @api.post("/v1/tasks", status_code=201, openapi_extra={"requestBody": OPEN_TASK_BODY})
    async def open_task_route(request: Request, tenant: str | None = None) -> JSONResponse:
        who = await scope_tenant(request, tenant)
        raw = await read_raw(request, snapshots.config.server.max_body_bytes)
        body = json_body(raw) if raw.strip() else {}
        task_id, task_type, budget = parse_open(body)
        config = snapshots.config
        await open_task(ledger.redis, who, task_id, task_type or "default", budget)
        ledger.opened.remember(who, task_id, budget)
        summary = await ledger.get(who, task_id)
        if task_type is None:
            summary["quote"] = None
            summary["quote_reason"] = "no task_type: a quote is per task type"
        else:
            low, high = period(config, None, None, None, time.time())
            summary["quote"] = await quote_for(config, ledger, who, task_type, low, high)
        return JSONResponse(summary, status_code=201)

    @api.get("/v1/reports/models")
    async def report_models(request: Request, tenant: str | None = None, window: str | None = None,
                            since: float | None = time_query(), until: float | None = time_query(),
                            task_type: str | None = None) -> dict[str, Any]:
        who = await scope_tenant(request, tenant)
        return await models_report(snapshots.config, ledger, who, window, since, until, task_type)


async def models_report(config: Config, ledger: Ledger, tenant: str, window: str | None, since: float | None,
                        until: float | None, task_type: str | None) -> dict[str, Any]:
    """Per task type x model path: jobs, success rate, cost and tokens per succeeded job, margin."""
    low, high = period(config, window, since, until, time.time())
    await ledger.flush()
    history = await ended_tasks(ledger.redis, tenant, task_type, low, high, config.quotes.max_samples)
    by_type: dict[str, list[Any]] = {}
    for ttype, sample in history:
        by_type.setdefault(ttype, []).append(sample)
    rows = []
    for ttype in sorted(by_type):
        spec = config.tasks.types.get(ttype)
        for row in by_model_path(by_type[ttype], spec.price_usd if spec is not None else None):
            rows.append({"task_type": ttype, **row})
    return {"object": "report", "by": "model", "tenant": tenant, "since": low, "until": high,
            "sample_cap": config.quotes.max_samples, "data": rows}
