"""decide(): every step in order, the explain record, still_allowed, and THE INVARIANT as a
property over random configs: whatever the health or strategy (cost_per_success included, with
random job outcomes and random draws), ``ordered`` only holds
deployments that the final data class and the jurisdiction rules allow for the tenant."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from decimal import Decimal
from random import Random
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import pii
from policies.capabilities import ModelFacts
from policies.decide import Decision, Policies, RequestFacts, decide, still_allowed
from policies.health import BreakerState
from policies.schema import ComplianceSection, RoutingSection, TenantPolicy
from policies.cost_per_success import ArmStats
from policies.strategies import LatencyStats
from providers.base import Deployment

NOW = 1_000_000.0


@dataclass(frozen=True)
class P:
    input: Decimal
    output: Decimal


def dep(dep_id: str, kind: str = "openai", **info: Any) -> Deployment:
    return Deployment(dep_id, "chat", kind, "m", model_info=MappingProxyType(info))


DEPS = (dep("azure-eu", "azure", region="eu"), dep("openai-us", region="us"),
        dep("bedrock-eu", "bedrock", region="eu"), dep("llama", "ollama_chat", region="local", open_weight=True))
POLICIES = Policies(
    RoutingSection.model_validate({"models": {"chat": {"strategy": "cost"}}, "breaker": {"cooldown_s": 30}}),
    ComplianceSection.model_validate(yaml.safe_load("""
default_class: internal
data_classes:
  - name: public
  - name: internal
    regions: [eu, us]
    pii: {payment_card: block, email: redact}
  - name: confidential
    regions: [eu]
    pii: {email: redact, iban: escalate, escalate_to: restricted}
  - name: restricted
    open_weight: true
    kinds: [ollama_chat, hosted_vllm]
jurisdiction_rules:
  - deny: {providers: [bedrock]}
    for: {tenant_regions: [eu]}
    reason: EU tenants do not use Bedrock
""")),
    MappingProxyType({"acme": TenantPolicy(region="eu", default_class="confidential"),
                      "lab": TenantPolicy(region="us", may_lower_class=True)}),
)
# The same, with panic routing off: nothing usable is refused for the cooldown
NO_PANIC = Policies(
    RoutingSection.model_validate({"models": {"chat": {"strategy": "cost"}},
                                   "breaker": {"cooldown_s": 30, "panic_threshold": 0}}),
    POLICIES.compliance, POLICIES.tenants)
PRICES = {"azure-eu": P(Decimal("0.00001"), Decimal("0.00003")), "openai-us": P(Decimal("0.000001"), Decimal("0.000002")),
          "bedrock-eu": P(Decimal("0.000003"), Decimal("0.000015")), "llama": P(Decimal(0), Decimal(0))}
OPEN = BreakerState("open", 5, NOW + 12, 0, "timeout")
EMAIL, CARD, IBAN = "ann@corp.example", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00"


def body(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": text}], **extra}


def run(tenant: str = "acme", text: str = "hello", header: str | None = None, health: dict | None = None,
        facts: dict | None = None, budget: int | None = None, policies: Policies = POLICIES, **extra: Any) -> Decision:
    return decide(RequestFacts(tenant, "chat", body(text, **extra), header, 1000, budget), DEPS, policies,
                  health or {}, {}, PRICES, NOW, 0.5, facts or {})


@pytest.mark.parametrize("kwargs, data_class, ordered, status, code", [
    ({}, "confidential", ["azure-eu"], None, None),  # EU only, bedrock denied for EU tenants
    ({"tenant": "lab"}, "internal", ["openai-us", "bedrock-eu", "azure-eu"], None, None),  # cost order
    ({"tenant": "nobody"}, "internal", ["openai-us", "bedrock-eu", "azure-eu"], None, None),
    ({"tenant": "lab", "header": "public"}, "public", ["llama", "openai-us", "bedrock-eu", "azure-eu"], None, None),
    ({"header": "restricted"}, "restricted", ["llama"], None, None),
    ({"text": f"iban {IBAN}"}, "restricted", ["llama"], None, None),  # escalated by PII
    ({"header": "public"}, "confidential", [], 403, "data_class_lowering_denied"),
    ({"header": "top-secret"}, "confidential", [], 400, "unknown_data_class"),
    ({"tenant": "lab", "text": f"card {CARD}"}, "internal", [], 403, "pii_blocked"),
    ({"health": {"azure-eu": OPEN}, "policies": NO_PANIC}, "confidential", [], 503,
     "no_compliant_deployment"),  # never bedrock/us
    ({"health": {"azure-eu": OPEN}}, "confidential", ["azure-eu"], None, None),  # panic: probe it, never bedrock/us
    ({"health": {"openai-us": OPEN}, "tenant": "lab"}, "internal", ["bedrock-eu", "azure-eu"], None, None),
    ({"facts": {"azure-eu": ModelFacts(supports_function_calling=False)}, "tools": [{"type": "function"}]},
     "confidential", [], 400, "no_capable_deployment"),
    ({"facts": {"azure-eu": ModelFacts(max_input_tokens=500)}}, "confidential", [], 400, "no_capable_deployment"),
])
def test_decide(kwargs: dict[str, Any], data_class: str, ordered: list[str], status: int | None,
                code: str | None) -> None:
    decision = run(**kwargs)
    assert decision.data_class == data_class
    assert [d.id for d in decision.ordered] == ordered
    assert ((decision.denial.status, decision.denial.code) if decision.denial else (None, None)) == (status, code)
    assert [c.deployment_id for c in decision.considered] == [d.id for d in DEPS]  # each once, in order


def test_no_compliant_deployment_at_all_is_403() -> None:
    policies = Policies(None, POLICIES.compliance, POLICIES.tenants)
    only_us = (dep("openai-us", region="us"),)
    decision = decide(RequestFacts("acme", "chat", body()), only_us, policies, {}, {}, {}, NOW, 0.0)
    assert (decision.denial.status, decision.denial.code) == (403, "no_compliant_deployment")
    assert "region 'us' is not one of eu" in decision.denial.message


def test_all_compliant_unhealthy_is_503_with_retry_after_and_never_a_fallback() -> None:
    decision = run(health={"azure-eu": OPEN}, policies=NO_PANIC)
    assert decision.denial.retry_after == pytest.approx(12)
    assert decision.denial.rule == "routing.breaker"
    verdicts = {c.deployment_id: (c.verdict, c.rule) for c in decision.considered}
    assert verdicts == {"azure-eu": ("excluded", "routing.breaker"),
                        "openai-us": ("excluded", "compliance.data_classes[confidential].regions"),
                        "bedrock-eu": ("excluded", "compliance.jurisdiction_rules[0]"),
                        "llama": ("excluded", "compliance.data_classes[confidential].regions")}
    assert [e.kind for e in decision.audit_events] == ["denial"]


def test_half_open_deployments_are_still_tried_for_their_probe() -> None:
    half_open = BreakerState("open", 5, NOW - 1, 0, "timeout")
    assert [d.id for d in run(health={"azure-eu": half_open}).ordered] == ["azure-eu"]


def test_budget_exceeded_is_429() -> None:
    routing = RoutingSection.model_validate({"models": {"chat": {"strategy": "budget", "tiers": [["azure-eu"]]}}})
    decision = run(budget=1000, policies=Policies(routing, POLICIES.compliance, POLICIES.tenants))
    assert (decision.denial.status, decision.denial.code) == (429, "budget_exceeded")


def test_redacted_body_is_what_to_send_and_the_input_is_untouched() -> None:
    request = body(f"mail {EMAIL}")
    before = copy.deepcopy(request)
    decision = decide(RequestFacts("acme", "chat", request), DEPS, POLICIES, {}, {}, PRICES, NOW, 0.5)
    assert request == before
    assert decision.body["messages"][0]["content"] == "mail [REDACTED:email]"
    assert dict(decision.redacted) == {"email": 1}
    assert [e.kind for e in decision.audit_events] == ["redaction"]


@pytest.mark.parametrize("text", [f"mail {EMAIL}", f"card {CARD}", f"iban {IBAN}"])
def test_explain_is_json_and_never_holds_request_text(text: str) -> None:
    for tenant in ("acme", "lab"):
        record = json.dumps(run(tenant=tenant, text=text).explain())
        assert EMAIL not in record and CARD not in record and IBAN not in record


def test_still_allowed() -> None:
    decision = run(tenant="lab")
    assert all(still_allowed(decision, d) for d in decision.ordered)
    assert not still_allowed(decision, DEPS[3])  # llama: not allowed for internal
    moved = dep("azure-eu", "azure", region="us-east")  # same id, different attributes
    assert not still_allowed(decision, moved)
    assert not still_allowed(run(header="public"), DEPS[0])  # a denied decision allows nothing


def test_no_sections_routes_by_priority() -> None:
    decision = decide(RequestFacts("t", "chat", body(f"card {CARD}")), DEPS, Policies(), {}, {}, {}, NOW, 0.5)
    assert decision.data_class is None and decision.denial is None
    assert [d.id for d in decision.ordered] == [d.id for d in DEPS]
    assert decision.body["messages"][0]["content"] == f"card {CARD}"


# --- the invariant, over random configs -----------------------------------------------------------

KINDS = ["openai", "azure", "bedrock", "hosted_vllm", "ollama_chat"]
REGIONS = ["eu", "us", "apac", "local"]
PII_TEXT = {"email": EMAIL, "phone": "+44 20 7946 0958", "payment_card": CARD, "iban": IBAN,
            "national_id": "536-90-4399"}
ACTIONS = ["allow", "redact", "escalate", "block"]


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    deps = []
    for i in range(n):
        info: dict[str, Any] = {}
        if draw(st.booleans()):
            info["region"] = draw(st.sampled_from(REGIONS))
        if draw(st.booleans()):
            info["open_weight"] = draw(st.booleans())
        if draw(st.integers(0, 4)) == 0:
            info["supports_streaming"] = False
        deps.append(Deployment(f"d{i}", draw(st.sampled_from(["chat", "alias"])), draw(st.sampled_from(KINDS)),
                               "m", model_info=MappingProxyType(info)))
    ids = [d.id for d in deps]
    names = [f"c{i}" for i in range(draw(st.integers(1, 4)))]
    classes = []
    for rank, name in enumerate(names):
        raw: dict[str, Any] = {"name": name}
        for key, values in (("regions", REGIONS), ("kinds", KINDS)):
            if draw(st.booleans()):
                raw[key] = draw(st.lists(st.sampled_from(values), max_size=3, unique=True))
        if draw(st.booleans()):
            raw["open_weight"] = True
        raw["allow"] = draw(st.lists(st.sampled_from(ids + ["alias"]), max_size=2, unique=True))
        raw["deny"] = draw(st.lists(st.sampled_from(ids + ["chat"]), max_size=2, unique=True))
        stricter = names[rank + 1:]
        actions = ACTIONS if stricter else ACTIONS[:2] + ACTIONS[3:]
        rules = {k: draw(st.sampled_from(actions)) for k in PII_TEXT if draw(st.booleans())}
        if "escalate" in rules.values():
            rules["escalate_to"] = draw(st.sampled_from(stricter))
        raw["pii"] = rules
        classes.append(raw)
    jurisdiction = []
    for _ in range(draw(st.integers(0, 2))):
        deny = {"providers": draw(st.lists(st.sampled_from(KINDS), max_size=2)),
                "regions": draw(st.lists(st.sampled_from(REGIONS), max_size=1)),
                "deployments": draw(st.lists(st.sampled_from(ids), max_size=2)),
                "models": draw(st.lists(st.sampled_from(["chat", "alias"]), max_size=1))}
        if not any(deny.values()):
            deny["deployments"] = [ids[0]]
        scope = {k: v for k, v in {"tenants": draw(st.none() | st.just(["t"])),
                                   "tenant_regions": draw(st.none() | st.lists(st.sampled_from(REGIONS), max_size=2)),
                                   "data_classes": draw(st.none() | st.lists(st.sampled_from(names), max_size=2))
                                   }.items() if v is not None}
        jurisdiction.append({"deny": deny, "for": scope, "reason": "random rule"})
    compliance = ComplianceSection.model_validate({"default_class": draw(st.sampled_from(names)),
                                                   "data_classes": classes, "jurisdiction_rules": jurisdiction})
    tenant = TenantPolicy(region=draw(st.none() | st.sampled_from(REGIONS)),
                          default_class=draw(st.none() | st.sampled_from(names)), may_lower_class=draw(st.booleans()))
    strategy = draw(st.sampled_from(["priority", "weighted", "latency", "cost", "budget", "cost_per_success"]))
    model_routing: dict[str, Any] = {"strategy": strategy}
    if strategy == "weighted":
        model_routing["weights"] = {i: draw(st.integers(0, 3)) for i in ids}
    if strategy == "budget":
        model_routing["tiers"] = [[i] for i in draw(st.permutations(ids))[:draw(st.integers(1, n))]]
        model_routing["low_budget_usd"] = Decimal(draw(st.sampled_from(["0", "0.01", "1"])))
    if strategy == "cost_per_success":  # outcomes that favour any deployment, exploring or not
        model_routing.update(min_success_rate=draw(st.sampled_from([0.0, 0.5, 0.99])),
                             explore_share=draw(st.sampled_from([0.0, 0.1, 1.0])), min_samples=draw(st.integers(1, 5)))
    routing = RoutingSection.model_validate({"models": {"chat": model_routing},
                                             "breaker": {"failures": 2, "half_open_probes": 1}})
    phases = st.sampled_from([None, BreakerState(), BreakerState("open", 2, NOW + 5, 0, "timeout"),
                              BreakerState("open", 2, NOW - 5, 0, "timeout"), BreakerState("half_open", 2, NOW, 1, "x"),
                              BreakerState("closed", 1, 0, 0, "timeout")])
    health = {i: s for i in ids if (s := draw(phases)) is not None}
    prices = {i: draw(st.none() | st.builds(P, st.sampled_from([Decimal(0), Decimal("0.000001"), Decimal("0.00001")]),
                                            st.sampled_from([Decimal(0), Decimal("0.00003")]))) for i in ids}
    latency = {i: LatencyStats(draw(st.floats(0.01, 5)), None, 1) for i in ids if draw(st.booleans())}
    outcomes = {i: ArmStats(jobs, draw(st.floats(0, jobs)), draw(st.integers(0, 10**13)))
                for i in ids if (jobs := draw(st.floats(0, 50))) and draw(st.booleans())}
    text = " and ".join(PII_TEXT[k] for k in draw(st.lists(st.sampled_from(sorted(PII_TEXT)), max_size=3)))
    return {
        "deps": tuple(deps), "policies": Policies(routing, compliance, {"t": tenant}),
        "facts": RequestFacts("t", "chat", body(text or "hello", stream=draw(st.booleans())),
                              draw(st.none() | st.sampled_from(names + ["bogus"])), draw(st.integers(0, 2000)),
                              draw(st.none() | st.integers(0, 10**11))),
        "health": health, "prices": prices, "latency": latency, "rand": draw(st.floats(0, 0.999)),
        "outcomes": outcomes, "seed": draw(st.integers(0, 2**32)),
    }


def oracle_allowed(d: Deployment, data_class: str, policies: Policies) -> bool:
    """Written apart from policies.compliance, straight from the README's rule order."""
    compliance, tenant = policies.compliance, policies.tenants["t"]
    spec = next(c for c in compliance.data_classes if c.name == data_class)
    if d.id in spec.deny or d.model_name in spec.deny:
        return False
    for rule in compliance.jurisdiction_rules:
        scope, deny = rule.for_, rule.deny
        applies = ((scope.tenants is None or "t" in scope.tenants)
                   and (scope.tenant_regions is None or tenant.region in scope.tenant_regions)
                   and (scope.data_classes is None or data_class in scope.data_classes))
        region = d.model_info.get("region")
        if applies and (d.model_name in deny.models or d.kind in deny.providers or d.id in deny.deployments
                        or (region is not None and region in deny.regions)):
            return False
    if d.id in spec.allow or d.model_name in spec.allow:
        return True
    return ((spec.regions is None or d.model_info.get("region") in spec.regions)
            and (not spec.open_weight or d.model_info.get("open_weight") is True)
            and (spec.kinds is None or d.kind in spec.kinds))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_ordered_is_always_compliant_or_the_decision_is_a_denial(s: dict[str, Any]) -> None:
    facts, policies, deps = s["facts"], s["policies"], s["deps"]
    before = copy.deepcopy(facts.body)
    decision = decide(facts, deps, policies, s["health"], s["latency"], s["prices"], NOW, s["rand"],
                      outcomes=s["outcomes"], rng=Random(s["seed"]))
    compliance = policies.compliance
    assert facts.body == before
    assert [c.deployment_id for c in decision.considered] == [d.id for d in deps]

    if decision.denial is not None:
        assert decision.ordered == ()
        assert decision.denial.status in (400, 403, 429, 503)
        assert not any(still_allowed(decision, d) for d in deps)
        if decision.denial.status == 503:  # something compliant exists, and all of it is unavailable
            assert decision.denial.code == "no_compliant_deployment"
            compliant = [d for d in deps if oracle_allowed(d, decision.data_class, policies)]
            assert compliant
            assert all(c.rule in ("routing.breaker", "capability.streaming") for c in decision.considered
                       if c.deployment_id in {d.id for d in compliant})
        return

    assert decision.ordered
    for d in decision.ordered:
        assert oracle_allowed(d, decision.data_class, policies), d.id
        assert still_allowed(decision, d)
    for d in deps:
        if d not in decision.ordered:
            assert not still_allowed(decision, d)
    # never below what was asked for, nor below the tenant's class unless it may lower it
    tenant = policies.tenants["t"]
    base = tenant.default_class or compliance.default_class
    rank = compliance.rank(decision.data_class)
    if facts.data_class_header in compliance.class_names():
        assert rank >= compliance.rank(facts.data_class_header)
    if not tenant.may_lower_class:
        assert rank >= compliance.rank(base)
    # what the final class says to redact is gone from the body that will be sent
    rules = compliance.get(decision.data_class).pii
    left = {h.kind for f in pii.detect_body(decision.body) for h in f.hits}
    assert not {k for k in left if rules.action(k) in ("redact", "block", "escalate")}
