"""Prometheus metrics, on a registry the app owns (never the global one).

Labels are bounded: public model names and provider kinds come from the config,
statuses are HTTP status classes, task types are capped (see ``TASK_TYPE_CAP``).
No task id, key, tenant or prompt is ever a label.

Under ``taskgate serve --workers N`` the CLI sets ``PROMETHEUS_MULTIPROC_DIR``
before the workers start, and ``/metrics`` aggregates every worker's files.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from gateway.accounting.pricing import usd
from gateway.accounting.records import AttemptRecord

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the output and nobody graphs them

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
COST_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)
TASK_TYPE_CAP = 50  # task types beyond this many distinct values are counted as "other"


def _build_facts() -> tuple[str, str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from gateway import __version__

    try:
        litellm = version("litellm")
    except PackageNotFoundError:
        litellm = "absent"
    return __version__, platform.python_version(), litellm


APIS = frozenset({"chat", "responses", "messages", "embeddings"})  # the ``api`` label's values


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # actor: "human" or "agent" (the key that called; bounded), last so sum() queries are unchanged
        self.requests = Counter("taskgate_requests", "Upstream attempts by outcome status",
                                ["model", "provider", "status", "actor"], registry=r)
        self.duration = Histogram("taskgate_request_duration_seconds", "Upstream attempt duration",
                                  ["model", "provider"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("taskgate_time_to_first_token_seconds", "Streams: time to the first upstream event",
                              ["model", "provider"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("taskgate_tokens", "Tokens by type", ["model", "provider", "type"], registry=r)
        self.cost = Counter("taskgate_cost_usd", "Cost of upstream attempts in USD", ["model", "provider", "actor"],
                            registry=r)
        self.unpriced = Counter("taskgate_unpriced_requests", "Attempts with no known price",
                                ["model", "provider"], registry=r)
        self.estimated = Counter("taskgate_estimated_usage_attempts",
                                 "Attempts whose usage (and so cost) is the gateway's estimate, not the provider's; "
                                 "type: lower_bound when hidden reasoning tokens may be missing, else estimate",
                                 ["model", "provider", "type"], registry=r)
        self.tasks = Counter("taskgate_tasks", "Tasks ended, by outcome", ["task_type", "outcome"], registry=r)
        self.task_cost = Histogram("taskgate_task_cost_usd", "Cost of ended tasks in USD", ["task_type", "outcome"],
                                   buckets=COST_BUCKETS, registry=r)
        # by the task's public model ('mixed' when it used several): cost per succeeded job by model in Grafana
        self.model_tasks = Counter("taskgate_model_tasks", "Tasks ended, by task type, public model and outcome",
                                   ["task_type", "model", "outcome"], registry=r)
        self.model_task_cost = Counter("taskgate_model_task_cost_usd", "Cost of ended tasks in USD, by task "
                                       "type, public model and outcome", ["task_type", "model", "outcome"],
                                       registry=r)
        self.in_flight = Gauge("taskgate_in_flight_requests", "Client requests being served",
                               multiprocess_mode="livesum", registry=r)
        self.upstream_errors = Counter("taskgate_upstream_errors", "Failed upstream attempts by kind of failure",
                                       ["provider", "reason"], registry=r)
        self.retries = Counter("taskgate_retries", "Attempts retried on the same deployment",
                               ["model", "provider"], registry=r)
        self.fallbacks = Counter("taskgate_fallbacks", "Attempts that moved on to the next deployment",
                                 ["model", "provider"], registry=r)
        # by client API (bounded: chat, responses, messages, embeddings); a new series, so the
        # contract's series and the dashboards built on them keep their labels
        self.api_requests = Counter("taskgate_api_requests", "Upstream attempts by client API and outcome status",
                                    ["api", "status"], registry=r)
        self.api_cost = Counter("taskgate_api_cost_usd", "Cost of upstream attempts in USD by client API", ["api"],
                                registry=r)
        self.waste = Counter("taskgate_waste_usd", "Cost that bought nothing, by reason", ["reason"], registry=r)
        self.policy_decisions = Counter("taskgate_policy_decisions", "Routing and compliance decisions",
                                        ["policy", "decision"], registry=r)
        self.budget_remaining = Gauge("taskgate_budget_remaining_usd", "Budget left for the configured tenants",
                                      ["tenant", "period"], multiprocess_mode="mostrecent", registry=r)
        self.dead_letters = Counter("taskgate_ledger_dead_letters", "Ledger operations the store refused, kept in "
                                    "the dead-letter file", ["operation"], registry=r)
        self.interrupted = Counter("taskgate_interrupted_requests", "Requests settled as interrupted (an estimate) "
                                   "after their process died or lost the store", registry=r)
        self.config_reloads = Counter("taskgate_config_reloads", "Config reloads by result", ["result"], registry=r)
        self.build_info = Gauge("taskgate_build_info", "Build facts; always 1",
                                ["version", "python", "litellm"], multiprocess_mode="max", registry=r)
        self.build_info.labels(*_build_facts()).set(1)
        self._task_types: set[str] = set()
        self._child_cache: dict[tuple[str, str, str, str], tuple[Any, ...]] = {}

    def task_type_label(self, task_type: str) -> str:
        if task_type in self._task_types or len(self._task_types) < TASK_TYPE_CAP:
            self._task_types.add(task_type)
            return task_type
        return "other"

    def _children(self, model: str, provider: str, actor: str, api: str) -> tuple[Any, ...]:
        """The per-(model, provider, actor, api) series of the hot path, looked up once (labels()
        takes a lock)."""
        key = (model, provider, actor, api)
        found = self._child_cache.get(key)
        if found is None:
            found = self._child_cache[key] = (
                self.requests.labels(model, provider, "200", actor), self.duration.labels(model, provider),
                self.tokens.labels(model, provider, "input"), self.tokens.labels(model, provider, "output"),
                self.cost.labels(model, provider, actor), self.api_requests.labels(api, "200"),
                self.api_cost.labels(api))
        return found

    def attempt(self, rec: AttemptRecord) -> None:
        model, provider, actor = rec.model, rec.provider, "agent" if rec.actor == "agent" else "human"
        api = rec.operation if rec.operation in APIS else "other"
        ok_requests, duration, tokens_in, tokens_out, cost_total, api_ok, api_cost = \
            self._children(model, provider, actor, api)
        if rec.outcome == "ok" and rec.status == 200:
            ok_requests.inc()
            api_ok.inc()
        else:
            status = str(rec.status) if rec.outcome == "ok" else rec.outcome
            self.requests.labels(model, provider, status, actor).inc()
            self.api_requests.labels(api, status).inc()
        duration.observe(rec.duration_s)
        if rec.ttft_s is not None:
            self.ttft.labels(model, provider).observe(rec.ttft_s)
        if rec.usage is not None:
            u = rec.usage
            tokens_in.inc(u.input_tokens)
            tokens_out.inc(u.output_tokens)
            if u.cached_input_tokens:
                self.tokens.labels(model, provider, "cached_input").inc(u.cached_input_tokens)
            if u.reasoning_tokens:
                self.tokens.labels(model, provider, "reasoning").inc(u.reasoning_tokens)
        if rec.outcome not in ("ok", "cancelled"):  # a client's cancellation is not the upstream's error
            self.upstream_errors.labels(provider, rec.error_reason or rec.outcome).inc()
        if rec.waste_reason == "retry":
            self.retries.labels(model, provider).inc()
        elif rec.waste_reason == "fallback":
            self.fallbacks.labels(model, provider).inc()
        if rec.usage_source == "estimated":
            self.estimated.labels(model, provider, "lower_bound" if rec.usage_lower_bound else "estimate").inc()
        if rec.cost_picousd is None:
            if rec.usage is not None:
                self.unpriced.labels(model, provider).inc()
        elif rec.cost_picousd:
            cost = rec.cost_picousd / 1e12  # a float is fine for a metric; the ledger keeps exact integers
            cost_total.inc(cost)
            api_cost.inc(cost)
            if rec.waste_reason:
                self.waste.labels(rec.waste_reason).inc(cost)

    def task_ended(self, task_type: str, outcome: str, cost_picousd: int, wasted_picousd: int = 0,
                   model: str = "none") -> None:
        """``wasted_picousd``: the part of the task's cost already counted as retry, fallback or
        cancelled waste, so that a failed task's waste is not counted twice. ``model``: the task's
        public model ('mixed' for several, 'none' for no attempt)."""
        label = self.task_type_label(task_type)
        self.tasks.labels(label, outcome).inc()
        self.model_tasks.labels(label, model, outcome).inc()
        self.model_task_cost.labels(label, model, outcome).inc(float(usd(cost_picousd)))
        self.task_cost.labels(label, outcome).observe(float(usd(cost_picousd)))
        rest = cost_picousd - wasted_picousd
        if outcome in ("failed", "abandoned") and rest > 0:
            self.waste.labels(f"{outcome}_task").inc(float(usd(rest)))

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
