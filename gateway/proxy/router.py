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
from typing import Any, Mapping

from gateway.config.load import Config
from gateway.errors import BadRequest, GatewayError, PolicyDenied, RateLimited, ServiceUnavailable
from gateway.accounting.pricing import map_keys
from policies.capabilities import ModelFacts, model_facts
from policies.compliance import tenant_facts
from policies.decide import Decision, RequestFacts, decide
from policies.verdicts import Denial
from providers.base import Deployment

_DENIAL_ERRORS: Mapping[int, type[GatewayError]] = {
    400: BadRequest, 403: PolicyDenied, 429: RateLimited, 503: ServiceUnavailable,
}
# the policy label of a denial, from the first part of the rule that made it
_POLICY_OF_RULE = {"compliance": "compliance", "tenants": "data_class", "capability": "capability",
                   "routing": "routing", "budget": "budget"}


def denial_error(denial: Denial) -> GatewayError:
    cls = _DENIAL_ERRORS.get(denial.status, PolicyDenied)
    return cls(denial.message, code=denial.code, retry_after=denial.retry_after)


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
               for m in body.get("messages") or ())


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """A cheap estimate for capability and cost decisions (~4 characters a token)."""
    total = 0
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return total // 4 + 4 * len(body.get("messages") or ())


class Router:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self._facts: dict[int, ModelFacts] = {}

    def facts_for(self, deps: tuple[Deployment, ...]) -> dict[str, ModelFacts]:
        out = {}
        for dep in deps:
            facts = self._facts.get(id(dep))
            if facts is None:
                entry = next((self.gw.price_map[k] for k in map_keys(dep) if k in self.gw.price_map), None)
                facts = self._facts[id(dep)] = model_facts(dep, entry)
            out[dep.id] = facts
        return out

    def decide(self, config: Config, tenant: str, model: str, group: tuple[Deployment, ...],
               body: Mapping[str, Any], data_class: str | None, budget_remaining: int | None,
               dry_run: bool = False) -> Decision:
        health = self.gw.health
        if not dry_run and data_class is None and self._trivial(config, model, group, body):
            # Nothing to decide: no compliance, config order, every breaker closed, nothing the
            # request needs that a deployment is known to lack. The full decision gives the same
            # order (tests/test_router.py); it is skipped because it costs ~37 µs a request.
            return Decision(model, tenant_facts(tenant, config.policies.tenants), None, "priority", body,
                            group, (), None, ())
        return decide(
            RequestFacts(tenant, model, body, data_class, prompt_tokens(body), budget_remaining),
            group, config.policies, health.breakers, health.latency,
            {d.id: self.gw.price(d) for d in group}, time.time(), random.random(), self.facts_for(group),
        )

    def _trivial(self, config: Config, model: str, group: tuple[Deployment, ...], body: Mapping[str, Any]) -> bool:
        policies = config.policies
        if policies.compliance is not None:
            return False
        if policies.routing is not None and policies.routing.for_model(model).strategy != "priority":
            return False
        breakers = self.gw.health.breakers
        if breakers and any(d.id in breakers and breakers[d.id].phase != "closed" for d in group):
            return False
        if body.get("tools") or body.get("functions") or body.get("stream") is True and any(
                d.model_info.get("supports_streaming") is False for d in group):
            return False
        facts = self.facts_for(group)
        limits = [f.max_input_tokens for f in facts.values() if f.max_input_tokens]
        if any(f.supports_vision is False for f in facts.values()) and _has_image(body):
            return False
        return not limits or prompt_tokens(body) <= min(limits)

    def account(self, decision: Decision, task_id: str, tenant: str) -> None:
        """Counts the decision and audits its denials, redactions and escalations."""
        metrics = self.gw.metrics
        if decision.denial is not None:
            metrics.policy_decisions.labels(policy_label(decision.denial.rule), "deny").inc()
        else:
            metrics.policy_decisions.labels("route", "allow").inc()
        for event in decision.audit_events:
            if event.kind != "denial":
                metrics.policy_decisions.labels(policy_label(event.rule), event.kind).inc()
            self.gw.ledger.audit({
                "ts": time.time(), "tenant": tenant, "task_id": task_id, "model": decision.model,
                "data_class": decision.data_class or "", "kind": event.kind, "rule": event.rule,
                "reason": event.reason, "detail": dict(event.detail),
            })
