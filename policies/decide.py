"""One routing decision: which deployments may serve a request, in which order, and why (pure).

The steps, in order; the first that leaves nothing ends the decision with a denial:

    1. data class      tenant default, X-Data-Class      400 unknown_data_class,
                                                          403 data_class_lowering_denied
    2. personal data   the final class's pii rules        403 pii_blocked
    3. compliance      deny, jurisdiction, allow, attrs   403 no_compliant_deployment
    4. capabilities    tools, vision, context, streaming  400 no_capable_deployment
    5. health          circuit breakers                   429 rate_limit_exceeded (all rate-limited),
                                                          panic probes, else 503 no_compliant_deployment
                                                          (no_available_deployment without compliance)
    6. strategy        order (budget may drop)            429 budget_exceeded

The invariant: ``Decision.ordered`` only holds deployments that the final data
class and the jurisdiction rules allow for the tenant. Health and strategy only
ever remove or reorder what compliance let through; when nothing compliant is
healthy the answer is a 429 or a 503, or panic probes of compliant deployments,
never a non-compliant deployment. The gateway
calls :func:`still_allowed` before every attempt, retries and fallbacks included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from random import Random
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from policies.capabilities import (
    ModelFacts,
    filter_capable,
    needs_of,
    unsupported_params,
)
from policies.compliance import TenantFacts, apply_pii, check_deployment
from policies.health import BreakerState, filter_healthy, when_none_usable
from policies.schema import (
    ComplianceSection,
    RoutingSection,
    TenantPolicy,
)
from policies.cost_per_success import ArmStats
from policies.prepared import Prepared, prepare
from policies.strategies import LatencyStats, PriceLike, StrategyInputs, order
from policies.verdicts import (
    CHOSEN,
    FALLBACK,
    AuditEvent,
    Consideration,
    Denial,
    excluded,
)
from providers.base import Deployment

_EMPTY: Mapping[str, Any] = MappingProxyType({})
# Defaults for absent sections, built once (pydantic models are frozen; building them per request costs)
DEFAULT_ROUTING = RoutingSection()


@dataclass(frozen=True, slots=True)
class RequestFacts:
    tenant: str
    model: str
    body: Mapping[str, Any]  # the parsed OpenAI request body; never changed
    data_class_header: str | None = None  # X-Data-Class as sent
    prompt_tokens: int = 0  # the gateway's estimate of the prompt
    budget_remaining_picousd: int | None = None  # the task's remaining budget; None: no budget
    params: frozenset[str] = frozenset()  # answer-changing parameters in use (providers.canonical.params_in_use)
    task_type: str = "default"  # X-Task-Type (cost_per_success keeps its numbers per task type)


@dataclass(frozen=True, slots=True)
class Policies:
    """The config sections a decision reads (``None``: the section is absent)."""

    routing: RoutingSection | None = None
    compliance: ComplianceSection | None = None
    tenants: Mapping[str, TenantPolicy] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Decision:
    model: str
    tenant: TenantFacts
    data_class: str | None  # the final class, after the header and any escalation
    strategy: str
    body: Mapping[str, Any]  # what to send upstream: the request body, redacted where the rules say
    ordered: tuple[Deployment, ...]  # the deployments to try, in order; empty when denied
    considered: tuple[Consideration, ...]  # every deployment of the model, in model_list order
    denial: Denial | None
    audit_events: tuple[AuditEvent, ...]
    pii_found: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # kind -> count
    redacted: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    compliance: ComplianceSection | None = field(default=None, repr=False, compare=False)
    probes: tuple[str, ...] = ()  # panic: ids whose open breakers the gateway lets a probe through
    strategy_detail: Mapping[str, Any] | None = None  # the numbers behind the order (cost_per_success)
    # the ids check_deployment passes for ``data_class``, tenant and config (None: not worked out);
    # :func:`still_allowed` reads it instead of checking each deployment again
    passing: frozenset[str] | None = field(default=None, repr=False, compare=False)

    @property
    def chosen(self) -> Deployment | None:
        return self.ordered[0] if self.ordered else None

    def explain(self) -> dict[str, Any]:
        """A JSON-ready account for ``/v1/route/explain`` (no request text)."""
        return {
            "model": self.model, "tenant": self.tenant.name, "data_class": self.data_class,
            "strategy": self.strategy, "chosen": self.chosen.id if self.chosen else None,
            "order": [d.id for d in self.ordered],
            "considered": [{"deployment": c.deployment_id, "verdict": c.verdict, "rule": c.rule,
                            "reason": c.reason, "position": c.position} for c in self.considered],
            "denial": None if self.denial is None else {
                "status": self.denial.status, "code": self.denial.code, "message": self.denial.message,
                "rule": self.denial.rule, "retry_after": self.denial.retry_after, "param": self.denial.param},
            "panic_probes": list(self.probes),
            "pii_found": dict(self.pii_found), "redacted": dict(self.redacted),
            "audit_events": [{"kind": e.kind, "rule": e.rule, "reason": e.reason, "detail": dict(e.detail)}
                             for e in self.audit_events],
            **({} if self.strategy_detail is None else {"strategy_detail": dict(self.strategy_detail)}),
        }


def decide(facts: RequestFacts, deployments: Sequence[Deployment], policies: Policies,
           health: Mapping[str, BreakerState], latency: Mapping[str, LatencyStats],
           prices: Mapping[str, PriceLike | None], now: float, rand: float,
           model_facts: Mapping[str, ModelFacts] = _EMPTY, outcomes: Mapping[str, ArmStats] = _EMPTY,
           rng: Random | None = None, prepared: Prepared | None = None, lite: bool = False) -> Decision:
    """Decide the route for one request over ``deployments`` (the model's, in model_list order).

    ``health``, ``latency``, ``prices`` and ``model_facts`` are keyed by deployment id;
    a missing id is a closed breaker, no latency sample, unpriced, and unknown facts.
    ``now`` is epoch seconds; ``rand`` is uniform in [0, 1). ``outcomes`` (cost_per_success) is
    the request's task type's job outcomes by deployment id; ``rng`` its random source.
    ``prepared``: the body-independent part (:mod:`policies.prepared`) for exactly this config,
    tenant, model, header and ``deployments``, kept from an earlier request; None: built here.
    ``lite``: for a request, not ``/v1/route/explain``: an allowed decision leaves out what only explain
    shows (``considered``, the strategy's reasons); its order, chosen deployment, class, body and
    events are the same (tests/test_policy_prepared.py). Denials are always complete.
    """
    routing, compliance = policies.routing, policies.compliance
    if prepared is None:
        prepared = prepare(facts.tenant, facts.model, facts.data_class_header, deployments, routing, compliance,
                           policies.tenants)
    tenant, model_routing = prepared.tenant, prepared.model_routing
    ctx = _Context(facts, deployments, tenant, model_routing.strategy, compliance, prepared.index)

    cls = prepared.data_class
    ctx.events += cls.events
    if cls.denial:
        return ctx.deny(cls.denial, cls.data_class, facts.body)
    found = apply_pii(facts.body, cls.data_class, compliance)
    ctx.events += found.events
    ctx.pii = (found.found, found.redacted)
    data_class, body = found.data_class, found.body
    if found.denial:
        return ctx.deny(found.denial, data_class, body)

    compliant, passing = prepared.compliant(data_class)
    ctx.passing = passing
    ctx.excluded += compliant.excluded
    if not compliant.allowed:
        return ctx.deny(Denial(403, "no_compliant_deployment", (
            f"no deployment of model '{facts.model}' may receive data of class '{data_class}' for tenant "
            f"'{tenant.name}': {_reasons(compliant.excluded)}"), "compliance"), data_class, body)

    capable = filter_capable(compliant.allowed, needs_of(body, facts.prompt_tokens, facts.params), model_facts)
    ctx.excluded += capable.excluded
    if not capable.allowed and all(c.rule == "capability.params" for c in capable.excluded):
        missing = sorted({p for d in compliant.allowed
                          for p in unsupported_params(facts.params, model_facts.get(d.id, ModelFacts()))})
        return ctx.deny(Denial(400, "unsupported_parameter", (
            f"no deployment of model '{facts.model}' that may receive this request supports the parameter(s) "
            f"{', '.join(missing)}: {_reasons(capable.excluded)}"), "capability.params",
            param=missing[0] if missing else None), data_class, body)
    if not capable.allowed:
        return ctx.deny(Denial(400, "no_capable_deployment", (
            f"no deployment of model '{facts.model}' that may receive this request can serve it: "
            f"{_reasons(capable.excluded)}"), "capability"), data_class, body)

    breaker = (routing or DEFAULT_ROUTING).breaker
    healthy = filter_healthy(capable.allowed, health, now, breaker)
    ctx.excluded += healthy.excluded
    usable = healthy.allowed
    if not usable:
        none = when_none_usable(capable.allowed, health, now, breaker)
        if not none.probes:
            return ctx.deny(_unavailable(facts.model, data_class, compliance, healthy.excluded, none.all_rate_limited,
                                         none.retry_after), data_class, body)
        usable = none.probes  # panic: a subset of what compliance and capabilities allowed
        ctx.probes = tuple(d.id for d in usable)
        ctx.events += (AuditEvent("panic", "routing.breaker.panic_threshold", (
            f"every deployment of model '{facts.model}' is ejected for failures; probing "
            f"{', '.join(ctx.probes)} instead of refusing for the cooldown")),)
        ctx.excluded = tuple(c for c in ctx.excluded if c.deployment_id not in ctx.probes)

    ordering = order(model_routing, usable, StrategyInputs(
        model=facts.model, rand=rand, latency=latency, prices=prices, prompt_tokens=facts.prompt_tokens,
        output_tokens=_output_tokens(body, routing), stream=bool(body.get("stream")),
        budget_remaining_picousd=facts.budget_remaining_picousd, outcomes=outcomes, rng=rng,
        task_type=facts.task_type, lite=lite))
    ctx.excluded += ordering.dropped
    if ordering.denial:
        return ctx.deny(ordering.denial, data_class, body)
    # Defence in depth: nothing reaches ``ordered`` that compliance did not allow.
    # (``passing``: the ids check_deployment passes for this class, tenant and config)
    ordered = tuple(d for d in ordering.ordered if d in compliant.allowed and d.id in passing)
    ctx.detail = ordering.detail
    if lite:
        return ctx.lite(ordered, data_class, body)
    return ctx.decide(ordered, ordering.why, data_class, body)


def still_allowed(decision: Decision, deployment: Deployment) -> bool:
    """May ``deployment`` be attempted under ``decision``? Call before every attempt.

    True only for a deployment that the decision ordered and that compliance still
    allows for the decision's final data class and tenant (by ``decision.passing``, which
    check_deployment worked out for exactly that class, tenant and config, else checked here)."""
    if decision.denial is not None or not any(d is deployment or d == deployment for d in decision.ordered):
        return False
    passing = decision.passing
    if passing is not None:
        return deployment.id in passing
    return check_deployment(deployment, decision.data_class, decision.tenant, decision.compliance) is None


def _unavailable(model: str, data_class: str | None, compliance: ComplianceSection | None,
                 excluded_: Sequence[Consideration], all_rate_limited: bool, retry_after: float | None) -> Denial:
    """Nothing usable: 429 when every deployment waits on its provider's rate limit, else 503;
    the message names each deployment and its cause, and data classes only where compliance applies."""
    which = (f"every deployment of model '{model}' allowed for data class '{data_class}'" if compliance is not None
             else f"every deployment of model '{model}'")
    soonest = f"; the soonest is usable again in {retry_after:.0f}s" if retry_after is not None else ""
    if all_rate_limited:
        return Denial(429, "rate_limit_exceeded", f"{which} is rate-limited by its provider: "
                      f"{_reasons(excluded_)}{soonest}", "routing.breaker", retry_after)
    code = "no_compliant_deployment" if compliance is not None else "no_available_deployment"
    return Denial(503, code, f"{which} is unavailable: {_reasons(excluded_)}{soonest}", "routing.breaker",
                  retry_after)


def _output_tokens(body: Mapping[str, Any], routing: RoutingSection | None) -> int:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return (routing or DEFAULT_ROUTING).assumed_output_tokens


def _reasons(items: Sequence[Consideration]) -> str:
    return "; ".join(f"{c.deployment_id}: {c.reason}" for c in items) or "none configured"


class _Context:
    """Collects exclusions and events while :func:`decide` runs, and builds the Decision."""

    def __init__(self, facts: RequestFacts, deployments: Sequence[Deployment], tenant: TenantFacts,
                 strategy: str, compliance: ComplianceSection | None, index: Mapping[str, int]) -> None:
        self.facts, self.deployments, self.tenant, self.index = facts, deployments, tenant, index
        self.strategy, self.compliance = strategy, compliance
        self.excluded: tuple[Consideration, ...] = ()
        self.events: tuple[AuditEvent, ...] = ()
        self.pii: tuple[Mapping[str, int], Mapping[str, int]] = (_EMPTY, _EMPTY)
        self.probes: tuple[str, ...] = ()
        self.detail: Mapping[str, Any] | None = None
        self.passing: frozenset[str] | None = None

    def deny(self, denial: Denial, data_class: str | None, body: Mapping[str, Any]) -> Decision:
        events = self.events
        if not any(e.kind == "denial" for e in events):
            events += (AuditEvent("denial", denial.rule, f"{denial.code}: {denial.message}"),)
        seen = {c.deployment_id for c in self.excluded}
        rest = tuple(excluded(d.id, denial.rule, f"request denied ({denial.code})")
                     for d in self.deployments if d.id not in seen)
        return self._build((), {}, data_class, body, self.excluded + rest, denial, events)

    def decide(self, ordered: tuple[Deployment, ...], why: Mapping[str, str], data_class: str | None,
               body: Mapping[str, Any]) -> Decision:
        rule = f"routing.models.{self.facts.model}.strategy ({self.strategy})"
        picked = tuple(Consideration(d.id, CHOSEN if i == 0 else FALLBACK, rule, why.get(d.id, ""), i)
                       for i, d in enumerate(ordered))
        return self._build(ordered, why, data_class, body, self.excluded + picked, None, self.events)

    def lite(self, ordered: tuple[Deployment, ...], data_class: str | None, body: Mapping[str, Any]) -> Decision:
        """An allowed decision without ``considered`` (only explain shows it; see :func:`decide`)."""
        return Decision(self.facts.model, self.tenant, data_class, self.strategy, body, ordered, (), None,
                        self.events, MappingProxyType(dict(self.pii[0])), MappingProxyType(dict(self.pii[1])),
                        self.compliance, self.probes, self.detail, self.passing)

    def _build(self, ordered: tuple[Deployment, ...], why: Mapping[str, str], data_class: str | None,
               body: Mapping[str, Any], considered: tuple[Consideration, ...], denial: Denial | None,
               events: tuple[AuditEvent, ...]) -> Decision:
        index = self.index
        considered = tuple(sorted(considered, key=lambda c: index.get(c.deployment_id, len(index))))
        return Decision(self.facts.model, self.tenant, data_class, self.strategy, body, ordered, considered,
                        denial, events, MappingProxyType(dict(self.pii[0])), MappingProxyType(dict(self.pii[1])),
                        self.compliance, self.probes if denial is None else (),
                        self.detail if denial is None else None, self.passing if denial is None else None)
