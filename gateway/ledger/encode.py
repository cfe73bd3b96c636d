"""Attempt records and intents as the ledger's Lua scripts take them (pure).

Every key a script touches is put into the record here, from
:mod:`gateway.ledger.keys`, so the scripts never build a key from an id.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone
from typing import Any

import orjson

from gateway.accounting.pricing import format_usd
from gateway.accounting.records import AttemptRecord
from gateway.config.load import Config
from gateway.ledger.keys import TenantKeys, for_tenant

INTERRUPTED_ATTEMPT = 999  # the attempt number of a settlement: never a real attempt's


@functools.lru_cache(maxsize=4)
def _day_of(day_number: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(day_number * 86400))


def utc_day(ts: float) -> str:
    return _day_of(int(ts // 86400))


def period_of(ts: float) -> tuple[str, str]:
    d = datetime.fromtimestamp(ts, timezone.utc)
    return d.strftime("%Y%m%d"), d.strftime("%Y%m")


def task_keys(keys: TenantKeys, task_id: str, period: tuple[str, str]) -> dict[str, Any]:
    return {"task": keys.task(task_id), "att": keys.attempts(task_id), "tasks": keys.tasks, "open": keys.open,
            "aggp": keys.agg_prefix, "records": keys.records, "spend": keys.spend(period),
            "intents": keys.intents, "deadlines": keys.deadlines}


@functools.lru_cache(maxsize=256)
def _tenant_keys_json(tenant: str, period: tuple[str, str], dedup_ttl: int) -> str:
    """The part of the keys object that depends on the tenant and the day only (without its ``{``)."""
    keys = for_tenant(tenant)
    rest = task_keys(keys, "", period)
    del rest["task"], rest["att"]
    return orjson.dumps({**rest, "seenp": keys.seen_prefix, "settledp": keys.settled_prefix,
                         "dedup_ttl": dedup_ttl}).decode()[1:]


def who(rec: AttemptRecord) -> str:
    """The actor a task is reported under: the person's key id (``-`` for a key from the config),
    and for an agent ``<person key id>/<agent name>``."""
    if rec.actor == "agent" and rec.person:
        return f"{rec.person}/{rec.agent}"
    return rec.key_id or "-"


def record_json(rec: AttemptRecord) -> bytes:
    """One attempt record as stored (the second line of the RECORD script's argument), as JSON: built
    in few steps, as this runs twice per request (the intent and the final record); byte for byte what
    the encoder before it wrote (tests/test_ledger_line.py keeps that one and compares)."""
    u = rec.usage
    cost = rec.cost_picousd
    if u is None:
        tokens: tuple[Any, ...] = (0, 0, 0, 0, 0, None)
    else:
        tokens = (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens,
                  u.cache_write_tokens, u.service_tier)
    source = rec.usage_source
    reserved = rec.reserved_picousd
    budget = rec.budget_picousd
    out: dict[str, Any] = {
        "tenant": rec.tenant, "task_id": rec.task_id, "task_type": rec.task_type,
        "request_id": rec.request_id, "attempt": rec.attempt, "ts": f"{rec.started_at + rec.duration_s:.6f}",
        "operation": rec.operation, "model": rec.model, "deployment": rec.deployment, "provider": rec.provider,
        "outcome": rec.outcome, "status": rec.status, "error_reason": rec.error_reason or "",
        "input_tokens": tokens[0], "output_tokens": tokens[1], "cached_input_tokens": tokens[2],
        "reasoning_tokens": tokens[3], "cache_write_tokens": tokens[4], "service_tier": tokens[5],
        "usage_source": source, "usage_lower_bound": rec.usage_lower_bound,
        "cost_source": "unpriced" if cost is None else "estimated" if source == "estimated" else "computed",
        "cost": "" if cost is None else str(cost), "cost_usd": "" if cost is None else format_usd(cost),
        "waste_reason": rec.waste_reason or "", "final": rec.final, "one_request": rec.one_request,
        "duration_s": round(rec.duration_s, 6), "ttft_s": rec.ttft_s, "end_outcome": rec.end_outcome or "",
        "reserved": str(reserved) if reserved else "", "budget": "" if budget is None else str(budget),
    }
    key_id = rec.key_id
    if key_id is not None:
        out["key_id"] = key_id
        out["actor"] = rec.actor
        out["who"] = who(rec)
        if rec.agent is not None:
            out["agent"] = rec.agent
            out["person"] = rec.person
    return orjson.dumps(out)


def keys_tail(rec: AttemptRecord, period: tuple[str, str], day: str, keys: TenantKeys, config: Config) -> str:
    """What follows ``{"task":"<key>","att":"<key>",`` in the keys object of ``rec`` (the first line of
    the RECORD script's argument): the tenant's keys, the virtual keys' lifetime spend (``kspend``: no
    expiry, unlike the day and month), what the script needs to know but the record as stored does not
    (its day, retention and the export stream's length) and :func:`route_suffix`. Task ids and tenant
    names are validated to characters JSON never escapes, so the two task keys are joined in as they
    are; the script adds the request id and attempt number to ``seenp`` and ``settledp``. This depends
    on the tenant, the spend period, the day, the public model, the virtual keys, whether the task is
    the request's own and the config, not on the task id: the ledger keeps it per those
    (gateway/ledger/ledger.py ``_line``)."""
    settings = config.tasks
    out = _tenant_keys_json(rec.tenant, period, settings.dedup_window_hours * 3600)[:-1]
    if rec.key_spend:
        out += ',"kspend":' + orjson.dumps([keys.key_spend(k) for k in rec.key_spend]).decode()
    retention = settings.one_request_retention_hours * 3600 if rec.one_request else settings.retention_days * 86400
    return (f'{out},"day":"{day}","retention":{retention},"stream_maxlen":{settings.records_stream_maxlen}'
            f'{route_suffix(rec.model, keys, config)}}}')


def route_suffix(model: str, tenant_keys: TenantKeys, config: Config) -> str:
    """What the keys object (a JSON object) gets for a record of ``model``: the cost_per_success outcome
    hash of that public model and its decay window (``,"route":...,"route_win":N``), when the model routes
    by cost_per_success, else ``""``. The record then marks its task for attribution when the task ends
    (gateway/ledger/ending.py, docs/OUTCOME-ATTRIBUTION.md)."""
    routing = config.policies.routing
    if routing is None:
        return ""
    settings = routing.for_model(model)
    if settings.strategy != "cost_per_success":
        return ""
    route = orjson.dumps(tenant_keys.route(model)).decode()
    return f',"route":{route},"route_win":{int(settings.cps("window"))}'
