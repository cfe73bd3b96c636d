"""The ledger's record lines (issue 16, writing less per request): ``Ledger._line`` keeps the keys part
per tenant, model, period, day and keys and builds the record JSON in fewer steps; its output is
byte-identical to the encoder it replaced, a copy of which is kept here, over many seeded records
(identity fields, budgets, one-request and task records, cost_per_success route keys, config reloads)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.accounting.metrics import Metrics
from gateway.accounting.pricing import format_usd
from gateway.accounting.records import AttemptRecord
from gateway.config.load import Config, parse
from gateway.config.schema import TasksSection
from gateway.ledger.encode import period_of, record_json, route_suffix, utc_day
from gateway.ledger.keys import TenantKeys, for_tenant
from gateway.ledger.ledger import Ledger
from gateway.store.embedded import connect
from providers.base import Usage

# --- the encoder as it was (gateway/ledger/encode.py and Ledger._line before the change) ----------


def _old_tenant_keys_json(tenant: str, period: tuple[str, str], dedup_ttl: int) -> str:
    keys = for_tenant(tenant)
    rest = {"tasks": keys.tasks, "open": keys.open, "aggp": keys.agg_prefix, "records": keys.records,
            "spend": keys.spend(period), "intents": keys.intents, "deadlines": keys.deadlines}
    return orjson.dumps({**rest, "seenp": keys.seen_prefix, "settledp": keys.settled_prefix,
                         "dedup_ttl": dedup_ttl}).decode()[1:]


def _old_keys_json(tenant: str, task_id: str, period: tuple[str, str], dedup_ttl: int) -> str:
    keys = for_tenant(tenant)
    return (f'{{"task":"{keys.task(task_id)}","att":"{keys.attempts(task_id)}",'
            + _old_tenant_keys_json(tenant, period, dedup_ttl))


def _old_record_keys(rec: AttemptRecord, dedup_ttl: int) -> str:
    period = rec.spend_period if rec.spend_period[0] else period_of(rec.started_at)
    out = _old_keys_json(rec.tenant, rec.task_id, period, dedup_ttl)
    if rec.key_spend:
        keys = for_tenant(rec.tenant)
        out = out[:-1] + ',"kspend":' + orjson.dumps([keys.key_spend(k) for k in rec.key_spend]).decode() + "}"
    return out


def _old_who(rec: AttemptRecord) -> str:
    if rec.actor == "agent" and rec.person:
        return f"{rec.person}/{rec.agent}"
    return rec.key_id or "-"


def _old_record_arg(rec: AttemptRecord, settings: TasksSection) -> dict[str, Any]:
    u = rec.usage
    one_request = rec.one_request
    out: dict[str, Any] = {
        "tenant": rec.tenant, "task_id": rec.task_id, "task_type": rec.task_type,
        "request_id": rec.request_id, "attempt": rec.attempt, "ts": f"{rec.started_at + rec.duration_s:.6f}",
        "operation": rec.operation, "model": rec.model, "deployment": rec.deployment, "provider": rec.provider,
        "outcome": rec.outcome, "status": rec.status, "error_reason": rec.error_reason or "",
        "input_tokens": u.input_tokens if u else 0, "output_tokens": u.output_tokens if u else 0,
        "cached_input_tokens": u.cached_input_tokens if u else 0,
        "reasoning_tokens": u.reasoning_tokens if u else 0,
        "cache_write_tokens": u.cache_write_tokens if u else 0,
        "service_tier": u.service_tier if u else None,
        "usage_source": rec.usage_source, "usage_lower_bound": rec.usage_lower_bound,
        "cost_source": ("unpriced" if rec.cost_picousd is None else
                        "estimated" if rec.usage_source == "estimated" else "computed"),
        "cost": "" if rec.cost_picousd is None else str(rec.cost_picousd),
        "cost_usd": "" if rec.cost_picousd is None else format_usd(rec.cost_picousd),
        "waste_reason": rec.waste_reason or "", "final": rec.final, "one_request": one_request,
        "duration_s": round(rec.duration_s, 6), "ttft_s": rec.ttft_s,
        "end_outcome": rec.end_outcome or "",
        "reserved": "" if not rec.reserved_picousd else str(rec.reserved_picousd),
        "budget": "" if rec.budget_picousd is None else str(rec.budget_picousd),
    }
    if rec.key_id is not None:
        out.update(key_id=rec.key_id, actor=rec.actor, who=_old_who(rec))
        if rec.agent is not None:
            out.update(agent=rec.agent, person=rec.person)
    return out


def _old_with_settings(keys: str, rec: AttemptRecord, settings: TasksSection) -> str:
    retention = settings.one_request_retention_hours * 3600 if rec.one_request else settings.retention_days * 86400
    return (f'{keys[:-1]},"day":"{utc_day(time.time())}","retention":{retention},'
            f'"stream_maxlen":{settings.records_stream_maxlen}}}')


def _old_line(rec: AttemptRecord, keys: TenantKeys, config: Config) -> tuple[str, str]:
    settings = config.tasks
    line = orjson.dumps(_old_record_arg(rec, settings)).decode()
    head = _old_with_settings(_old_record_keys(rec, settings.dedup_window_hours * 3600), rec, settings)
    route = route_suffix(rec.model, keys, config)  # the old Ledger kept this per (tenant, model) and config
    return (f"{head[:-1]}{route}}}" if route else head) + "\x1e" + line, line


# --- generated records --------------------------------------------------------------------------

CONFIG_A = """
store: {{url: "{url}", spool_dir: "{spool}"}}
model_list:
  - model_name: m
    litellm_params: {{model: openai/gpt-a, api_base: "http://a/v1", api_key: k}}
    model_info: {{id: a}}
  - model_name: plain
    litellm_params: {{model: openai/gpt-b, api_base: "http://b/v1", api_key: k}}
    model_info: {{id: b}}
routing:
  models:
    m: {{strategy: cost_per_success, min_success_rate: 0.8, window: {window}}}
tasks: {{retention_days: {days}, one_request_retention_hours: {hours}, dedup_window_hours: {dedup},
        records_stream_maxlen: {maxlen}}}
"""
CONFIG_B = """
store: {{url: "{url}", spool_dir: "{spool}"}}
"""
TEXT = "abcXYZ09-_. é☃\"\\\n\t/\x01"


def _text(rng: random.Random, n: int = 12) -> str:
    return "".join(rng.choice(TEXT) for _ in range(rng.randint(0, n)))


def _ident(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefXYZ0189-_.") for _ in range(rng.randint(1, 16)))


def _maybe(rng: random.Random, value: Any) -> Any:
    return value if rng.random() < 0.5 else None


def generated(rng: random.Random) -> AttemptRecord:
    usage = None if rng.random() < 0.2 else Usage(
        input_tokens=rng.randint(0, 10**7), output_tokens=rng.randint(0, 10**6),
        cached_input_tokens=rng.randint(0, 1000), reasoning_tokens=rng.randint(0, 1000),
        cache_write_tokens=rng.randint(0, 1000), service_tier=rng.choice([None, "default", "flex", _text(rng)]))
    key_id = rng.choice([None, None, "-", _ident(rng)])
    actor = rng.choice(["human", "agent"])
    agent = _maybe(rng, _ident(rng)) if key_id is not None else None
    one_request = rng.random() < 0.5
    return AttemptRecord(
        request_id=_ident(rng), attempt=rng.choice([0, 1, 2, 999]), task_id=_ident(rng),
        task_type=rng.choice(["chat", "triage", _text(rng)]), tenant=rng.choice(["acme", "bench", "t.1-x_Y"]),
        operation=rng.choice(["chat", "responses", "messages", "embeddings"]),
        model=rng.choice(["m", "plain", "other"]), deployment=rng.choice(["a", "b", _text(rng)]),
        provider=rng.choice(["openai", "anthropic"]), outcome=rng.choice(["ok", "error", "interrupted"]),
        status=rng.choice([0, 200, 429, 500]), error_reason=_maybe(rng, _text(rng)), usage=usage,
        usage_source=rng.choice(["provider", "estimated", "none"]),
        cost_picousd=rng.choice([None, 0, rng.randint(1, 10**15), -rng.randint(1, 10**9)]),
        started_at=rng.uniform(1.6e9, 1.9e9), duration_s=rng.choice([0.0, rng.uniform(0, 100), 1e-7]),
        ttft_s=_maybe(rng, rng.uniform(0, 5)), final=rng.random() < 0.7,
        waste_reason=rng.choice([None, "retry", "fallback", "interrupted"]),
        end_outcome=rng.choice([None, "succeeded", "failed"]) if one_request else None,
        reserved_picousd=rng.choice([None, 0, rng.randint(1, 10**12)]),
        budget_picousd=rng.choice([None, 0, rng.randint(1, 10**12)]),
        usage_lower_bound=rng.random() < 0.2,
        spend_period=rng.choice([("", ""), ("20261203", "202612"), ("20270101", "202701")]),
        one_request=one_request, key_id=key_id, actor=actor, agent=agent,
        person=_maybe(rng, _ident(rng)) if agent is not None else None,
        key_spend=rng.choice([(), (key_id or "k",), (key_id or "k", "person-1")]))


class Source:
    def __init__(self, config: Config) -> None:
        self.config = config


def test_lines_are_byte_identical_to_the_old_encoder(redis_server: Any, tmp_path: Path) -> None:
    rng = random.Random(20261203)
    url = redis_server.url
    spool = tmp_path / "spool"
    configs = [parse(CONFIG_B.format(url=url, spool=spool), "b.yaml", {})] + [
        parse(CONFIG_A.format(url=url, spool=spool, window=rng.randint(1, 1000), days=rng.randint(1, 90),
                              hours=rng.randint(1, 48), dedup=rng.randint(1, 168),
                              maxlen=rng.randint(1000, 10**6)), "a.yaml", {}) for _ in range(3)]
    source = Source(configs[0])
    led = Ledger(connect(url), source, Metrics())
    routed = 0
    for i in range(6000):
        if i % 1500 == 0:  # a reload: the kept keys parts of the old config must not be used
            source.config = configs[i // 1500]
        rec = generated(rng)
        keys = for_tenant(rec.tenant)
        new = led._line(rec, keys)
        assert new == _old_line(rec, keys, source.config), rec
        assert record_json(rec) == orjson.dumps(_old_record_arg(rec, source.config.tasks))
        routed += '"route":' in new[0]
    assert routed > 500, "cost_per_success records were generated"
    assert 0 < len(led._tails) <= 1024


def test_the_kept_keys_part_follows_the_day(redis_server: Any, tmp_path: Path, monkeypatch: Any) -> None:
    config = parse(CONFIG_B.format(url=redis_server.url, spool=tmp_path), "b.yaml", {})
    led = Ledger(connect(redis_server.url), Source(config), Metrics())
    rec = generated(random.Random(1))
    keys = for_tenant(rec.tenant)
    today = led._line(rec, keys)[0]
    monkeypatch.setattr(time, "time", lambda: 2.0e9)
    tomorrow = led._line(rec, keys)[0]
    assert f'"day":"{utc_day(2.0e9)}"' in tomorrow and tomorrow == _old_line(rec, keys, config)[0] != today
