"""Routing a request: gather the facts, ask :func:`policies.decide.decide`, record what it said.

The decision itself is pure (see ``policies/``). This module reads the
inputs it needs — breaker states, latency, prices, model facts, the task's
remaining budget — and afterwards counts the decision in
``taskgate_policy_decisions_total`` and writes its denials, redactions and
escalations to the audit log. A dry run (``/v1/route/explain``) does neither.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from types import MappingProxyType
from collections.abc import Mapping  # (not typing.Mapping: isinstance on it is several times slower)
from typing import Any, Callable

from gateway.accounting.metrics import Metrics
from gateway.accounting.prices import Price
from gateway.errors import (
    BadRequest,
    GatewayError,
    PolicyDenied,
    RateLimited,
    ServiceUnavailable,
)
from gateway.snapshot import Snapshot
from gateway.upstream.health import HealthBook
from gateway.upstream.outcomes import NONE as NO_OUTCOMES
from gateway.upstream.outcomes import OutcomeBook
from policies.capabilities import ModelFacts
from policies.compliance import tenant_facts
from policies.decide import Decision, RequestFacts, decide
from policies.prepared import Prepared, prepare
from policies.strategies import StrategyInputs, order
from policies.verdicts import Denial
from providers.base import Deployment

_FAST_STRATEGIES = frozenset({"priority", "latency"})  # orders that need neither prices nor outcomes
MAX_PREPARED = 10_000  # (tenant, model, X-Data-Class) entries kept per snapshot; then it starts afresh


@dataclass(frozen=True, slots=True)
class _Prepared:
    policy: Prepared
    prices: Mapping[str, Price | None]
    facts: Mapping[str, ModelFacts]


_DENIAL_ERRORS: Mapping[int, type[GatewayError]] = {
    400: BadRequest, 403: PolicyDenied, 429: RateLimited, 503: ServiceUnavailable,
}
# the policy label of a denial, from the first part of the rule that made it
_POLICY_OF_RULE = {"compliance": "compliance", "tenants": "data_class", "capability": "capability",
                   "routing": "routing", "budget": "budget"}


def denial_error(denial: Denial) -> GatewayError:
    cls = _DENIAL_ERRORS.get(denial.status, PolicyDenied)
    return cls(denial.message, code=denial.code, retry_after=denial.retry_after, param=denial.param)


def policy_label(rule: str) -> str:
    head = rule.split(".", 1)[0].split("[", 1)[0]
    if head == "compliance" and "pii" in rule:
        return "pii"
    if head == "compliance" and "jurisdiction" in rule:
        return "jurisdiction"
    return _POLICY_OF_RULE.get(head, head if head in ("pii", "health") else "other")


def _has_image(body: Mapping[str, Any]) -> bool:
    return any(isinstance(m, Mapping) and isinstance(m.get("content"), list)
               and any(isinstance(p, Mapping) and p.get("type") == "image_url" for p in m["content"])
               for m in _messages(body))


def _messages(body: Mapping[str, Any]) -> list[Any]:
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []  # a front refuses a wrong type; never crash here


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """A cheap estimate for capability and cost decisions (~4 characters a token)."""
    total = 0
    messages = _messages(body)
    for m in messages:
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return total // 4 + 4 * len(messages)


class Router:
    """Decides routes from a snapshot and the live health; counts and audits what it decided."""

    def __init__(self, health: HealthBook, metrics: Metrics, audit: Callable[[dict[str, Any]], None],
                 outcomes: OutcomeBook | None = None, rng: random.Random | None = None) -> None:
        self.health = health
        self.metrics = metrics
        self.audit = audit
        self.outcomes = outcomes  # job outcomes, for cost_per_success
        self.rng = rng or random.Random()  # cost_per_success's draws (a test passes a seeded one)
        # the body-independent part of decisions (policies/prepared.py), with the group's prices and
        # facts, by (tenant, model, X-Data-Class); for one snapshot only: a reload starts afresh
        self._prepared: dict[tuple[str, str, str | None], _Prepared] = {}
        self._prepared_of: Snapshot | None = None

    def decide(self, snapshot: Snapshot, tenant: str, model: str, group: tuple[Deployment, ...],
               body: Mapping[str, Any], data_class: str | None, budget_remaining: int | None,
               params: frozenset[str] = frozenset(), *, explain: bool = False,
               task_type: str = "default") -> Decision:
        """``explain`` always runs the full decision, so that it can show every deployment's verdict."""
        config = snapshot.config
        health, routing = self.health, config.policies.routing
        fast = None if explain or data_class is not None else self._trivial(snapshot, model, group, body, params)
        if fast is not None:
            # Nothing to decide but the order: no compliance, every breaker closed, nothing the request
            # needs that a deployment is known to lack; config order, or the latency strategy's over
            # the whole group. The full decision gives the same order (tests/test_router.py); it is
            # skipped because it costs ~20-35 µs a request.
            ordered = group
            if fast == "latency" and routing is not None:
                ordered = order(routing.for_model(model), group, StrategyInputs(
                    model=model, latency=health.latency, stream=bool(body.get("stream")))).ordered
            return Decision(model, tenant_facts(tenant, config.policies.tenants), None, fast, body,
                            ordered, (), None, ())
        outcomes = NO_OUTCOMES
        if self.outcomes is not None and routing is not None \
                and routing.for_model(model).strategy == "cost_per_success":
            outcomes = self.outcomes.arms(tenant, model, task_type)
        prepared = self._prepare(snapshot, tenant, model, group, data_class)
        decision = decide(
            RequestFacts(tenant, model, body, data_class, prompt_tokens(body), budget_remaining, params, task_type),
            group, config.policies, health.breakers, health.latency, prepared.prices, time.time(), random.random(),
            prepared.facts, outcomes, self.rng, prepared.policy, lite=not explain,
        )
        if decision.probes and not explain:  # panic: open those breakers to probes (a dry run changes nothing)
            for dep_id in decision.probes:
                health.probe(dep_id)
        return decision

    def _prepare(self, snapshot: Snapshot, tenant: str, model: str, group: tuple[Deployment, ...],
                 data_class: str | None) -> _Prepared:
        """What decisions for this snapshot, tenant, model, header and group share, worked out once.
        Breakers, latency and outcomes are not part of it: they are read per request."""
        if self._prepared_of is not snapshot or len(self._prepared) >= MAX_PREPARED:
            self._prepared, self._prepared_of = {}, snapshot
        key = (tenant, model, data_class)
        found = self._prepared.get(key)
        if found is None or found.policy.deployments is not group:  # (a group is the snapshot's own tuple)
            policies = snapshot.config.policies
            found = self._prepared[key] = _Prepared(
                prepare(tenant, model, data_class, group, policies.routing, policies.compliance, policies.tenants),
                MappingProxyType({d.id: snapshot.prices.get(d.id) for d in group}),
                MappingProxyType({d.id: snapshot.facts[d.id] for d in group}))
        return found

    def _trivial(self, snapshot: Snapshot, model: str, group: tuple[Deployment, ...], body: Mapping[str, Any],
                 params: frozenset[str]) -> str | None:
        """The strategy, when the decision is trivial (see :meth:`decide`); else None."""
        policies = snapshot.config.policies
        if policies.compliance is not None:
            return None
        strategy = "priority" if policies.routing is None else policies.routing.for_model(model).strategy
        return strategy if strategy in _FAST_STRATEGIES and self._plain(snapshot, model, group, body, params) \
            else None

    def _plain(self, snapshot: Snapshot, model: str, group: tuple[Deployment, ...], body: Mapping[str, Any],
               params: frozenset[str]) -> bool:
        breakers = self.health.breakers
        if breakers and any(d.id in breakers and breakers[d.id].phase != "closed" for d in group):
            return False
        supported = snapshot.group_params.get(model)
        if params and supported is not None and not params <= supported:
            return False  # some deployment cannot honour a parameter: the full decision sees to it
        if body.get("tools") or body.get("functions") or body.get("stream") is True and any(
                d.model_info.get("supports_streaming") is False for d in group):
            return False
        facts = [snapshot.facts[d.id] for d in group]
        limits = [f.max_input_tokens for f in facts if f.max_input_tokens]
        if any(f.supports_vision is False for f in facts) and _has_image(body):
            return False
        return not limits or prompt_tokens(body) <= min(limits)

    def account(self, decision: Decision, task_id: str, tenant: str) -> None:
        """Counts the decision and audits its denials, redactions and escalations."""
        metrics = self.metrics
        if decision.denial is not None:
            metrics.policy_decisions.labels(policy_label(decision.denial.rule), "deny").inc()
        else:
            metrics.policy_decisions.labels("route", "allow").inc()
        for event in decision.audit_events:
            if event.kind != "denial":
                metrics.policy_decisions.labels(policy_label(event.rule), event.kind).inc()
            self.audit({
                "ts": time.time(), "tenant": tenant, "task_id": task_id, "model": decision.model,
                "data_class": decision.data_class or "", "kind": event.kind, "rule": event.rule,
                "reason": event.reason, "detail": dict(event.detail),
            })
