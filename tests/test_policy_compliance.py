"""Compliance rules, one table per step: data class, personal data, deployment filter."""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from policies.compliance import (
    TenantFacts,
    apply_pii,
    effective_class,
    filter_deployments,
    tenant_facts,
)
from policies.schema import ComplianceSection, TenantPolicy
from providers.base import Deployment

COMPLIANCE = ComplianceSection.model_validate(yaml.safe_load("""
default_class: internal
data_classes:
  - name: public
  - name: internal
    regions: [eu, us]
    deny: [banned-model]
    pii: {payment_card: block, email: redact, national_id: escalate, escalate_to: confidential}
  - name: confidential
    regions: [eu]
    allow: [azure-ch]
    pii: {email: redact, phone: redact, iban: escalate, escalate_to: restricted}
  - name: restricted
    open_weight: true
    kinds: [ollama_chat, hosted_vllm]
    model_info: {certified: [true]}
    pii: {payment_card: block, phone: redact}
jurisdiction_rules:
  - deny: {providers: [bedrock], regions: [us]}
    for: {tenant_regions: [eu]}
    reason: EU data stays out of US regions
  - deny: {models: [gpt-4o], deployments: [special]}
    for: {tenants: [bank], data_classes: [confidential, restricted]}
    reason: the bank's contract excludes them for customer data
"""))


def dep(dep_id: str, kind: str = "openai", model_name: str = "chat", **info: Any) -> Deployment:
    return Deployment(dep_id, model_name, kind, "m", model_info=MappingProxyType(info))


ACME = TenantFacts("acme", "eu", "confidential", False)
LAB = TenantFacts("lab", "us", "internal", True)
NOBODY = TenantFacts("nobody")


# --- 1. data class ------------------------------------------------------------------

@pytest.mark.parametrize("tenant, header, data_class, status, code", [
    (NOBODY, None, "internal", None, None),  # compliance.default_class
    (ACME, None, "confidential", None, None),  # the tenant's default
    (ACME, "", "confidential", None, None),  # an empty header is no header
    (ACME, "restricted", "restricted", None, None),  # raising is always allowed
    (ACME, " Restricted ", "restricted", None, None),  # case and spaces do not matter
    (ACME, "confidential", "confidential", None, None),  # same class
    (ACME, "public", "confidential", 403, "data_class_lowering_denied"),
    (ACME, "internal", "confidential", 403, "data_class_lowering_denied"),
    (LAB, "public", "public", None, None),  # may_lower_class
    (NOBODY, "public", "internal", 403, "data_class_lowering_denied"),
    (ACME, "secret", "confidential", 400, "unknown_data_class"),
])
def test_effective_class(tenant: TenantFacts, header: str | None, data_class: str, status: int | None,
                         code: str | None) -> None:
    decision = effective_class(tenant, header, COMPLIANCE)
    assert decision.data_class == data_class
    assert (decision.denial.status, decision.denial.code) == (status, code) if status else decision.denial is None


@pytest.mark.parametrize("header, status", [(None, None), ("restricted", 400)])
def test_without_compliance_a_header_cannot_be_honoured(header: str | None, status: int | None) -> None:
    decision = effective_class(NOBODY, header, None)
    assert decision.data_class is None
    assert (decision.denial.status if decision.denial else None) == status


def test_a_tenant_default_class_that_does_not_exist_fails_closed() -> None:
    decision = effective_class(TenantFacts("odd", None, "gone"), "restricted", COMPLIANCE)
    assert decision.data_class is None
    assert (decision.denial.status, decision.denial.rule) == (403, "tenants.odd.default_class")


def test_lowering_and_raising_are_audited() -> None:
    assert [e.kind for e in effective_class(LAB, "public", COMPLIANCE).events] == ["class_lowered"]
    assert [e.kind for e in effective_class(ACME, "restricted", COMPLIANCE).events] == ["class_raised"]
    assert [e.kind for e in effective_class(ACME, "public", COMPLIANCE).events] == ["denial"]


def test_tenant_facts_from_config() -> None:
    tenants = {"acme": TenantPolicy(region="eu", default_class="Confidential")}
    assert tenant_facts("acme", tenants) == TenantFacts("acme", "eu", "confidential", False)
    assert tenant_facts("other", tenants) == TenantFacts("other")


# --- 2. personal data -------------------------------------------------------------------

CARD, EMAIL, PHONE = "4111 1111 1111 1111", "ann@corp.example", "+44 20 7946 0958"
IBAN, SSN = "DE89 3704 0044 0532 0130 00", "536-90-4399"


@pytest.mark.parametrize("data_class, text, final, code, redacted, out", [
    ("public", f"{CARD} {EMAIL}", "public", None, {}, f"{CARD} {EMAIL}"),  # public allows everything
    ("internal", "no personal data", "internal", None, {}, "no personal data"),
    ("internal", f"mail {EMAIL}", "internal", None, {"email": 1}, "mail [REDACTED:email]"),
    ("internal", f"pay {CARD}", "internal", "pii_blocked", {}, f"pay {CARD}"),
    ("internal", f"pay {CARD} ssn {SSN}", "internal", "pii_blocked", {}, None),  # block wins over escalate
    # escalate: internal -> confidential, whose rules then apply (email and phone redacted)
    ("internal", f"ssn {SSN} {EMAIL} {PHONE}", "confidential", None, {"email": 1, "phone": 1},
     f"ssn {SSN} [REDACTED:email] [REDACTED:phone]"),
    # a chain: internal -> confidential (ssn) -> restricted (iban); restricted allows email, redacts phone
    ("internal", f"{SSN} {IBAN} {EMAIL} {PHONE}", "restricted", None, {"phone": 1},
     f"{SSN} {IBAN} {EMAIL} [REDACTED:phone]"),
    # a chain that ends in a block: restricted blocks cards
    ("confidential", f"{IBAN} {CARD}", "restricted", "pii_blocked", {}, None),
    ("restricted", f"{EMAIL} {PHONE}", "restricted", None, {"phone": 1}, f"{EMAIL} [REDACTED:phone]"),
])
def test_apply_pii(data_class: str, text: str, final: str, code: str | None, redacted: dict[str, int],
                   out: str | None) -> None:
    body = {"messages": [{"role": "user", "content": text}]}
    before = copy.deepcopy(body)
    decision = apply_pii(body, data_class, COMPLIANCE)
    assert body == before
    assert decision.data_class == final
    assert (decision.denial.code if decision.denial else None) == code
    assert dict(decision.redacted) == redacted
    if out is not None:
        assert decision.body["messages"][0]["content"] == out


def test_pii_events_name_rules_and_counts_never_text() -> None:
    decision = apply_pii({"messages": [{"role": "user", "content": f"{SSN} {EMAIL} {EMAIL}"}]}, "internal",
                         COMPLIANCE)
    kinds = [(e.kind, e.rule) for e in decision.events]
    assert kinds == [("escalation", "compliance.data_classes[internal].pii.escalate_to"),
                     ("redaction", "compliance.data_classes[confidential].pii")]
    assert decision.events[1].detail["email"] == 2
    assert decision.events[1].detail["fields"] == "messages[0].content"
    assert all(EMAIL not in repr(e) and SSN not in repr(e) for e in decision.events)


def test_pii_blocked_denial_names_the_rule() -> None:
    decision = apply_pii({"messages": [{"role": "user", "content": CARD}]}, "internal", COMPLIANCE)
    assert decision.denial is not None
    assert (decision.denial.status, decision.denial.rule) == (403, "compliance.data_classes[internal].pii.payment_card")
    assert CARD not in decision.denial.message


# --- 3. deployments --------------------------------------------------------------------------

@pytest.mark.parametrize("deployment, data_class, tenant, rule", [
    # attributes
    (dep("a", region="eu"), "internal", NOBODY, None),
    (dep("a", region="us"), "internal", NOBODY, None),
    (dep("a", region="EU"), "confidential", NOBODY, None),  # regions compare case-insensitively
    (dep("a", region="apac"), "internal", NOBODY, "compliance.data_classes[internal].regions"),
    (dep("a"), "internal", NOBODY, "compliance.data_classes[internal].regions"),  # no region: fails
    (dep("a", region="us"), "confidential", NOBODY, "compliance.data_classes[confidential].regions"),
    (dep("a", region="apac"), "public", NOBODY, None),  # no constraints
    (dep("a", "ollama_chat", open_weight=True, certified=True), "restricted", NOBODY, None),
    (dep("a", "ollama_chat", open_weight="yes", certified=True), "restricted", NOBODY,
     "compliance.data_classes[restricted].open_weight"),  # only a real true counts
    (dep("a", "openai", open_weight=True, certified=True), "restricted", NOBODY,
     "compliance.data_classes[restricted].kinds"),
    (dep("a", "hosted_vllm", open_weight=True), "restricted", NOBODY,
     "compliance.data_classes[restricted].model_info"),
    # deny and allow lists, by id or public model name
    (dep("banned-model", region="eu"), "internal", NOBODY, "compliance.data_classes[internal].deny"),
    (dep("x", model_name="banned-model", region="eu"), "internal", NOBODY, "compliance.data_classes[internal].deny"),
    (dep("azure-ch", "azure", region="ch"), "confidential", NOBODY, None),  # allow beats attributes
    (dep("azure-ch", "azure", region="ch"), "internal", NOBODY, "compliance.data_classes[internal].regions"),
    # jurisdiction rules
    (dep("b", "bedrock", region="eu"), "internal", ACME, "compliance.jurisdiction_rules[0]"),
    (dep("b", "bedrock", region="eu"), "internal", LAB, None),  # the rule is for EU tenants
    (dep("b", "bedrock", region="eu"), "internal", NOBODY, None),  # no region: not an EU tenant
    (dep("o", region="us"), "internal", ACME, "compliance.jurisdiction_rules[0]"),
    (dep("g", model_name="gpt-4o", region="eu"), "confidential", TenantFacts("bank", "ch"),
     "compliance.jurisdiction_rules[1]"),
    (dep("g", model_name="gpt-4o", region="eu"), "internal", TenantFacts("bank", "ch"), None),  # not that class
    (dep("g", model_name="gpt-4o", region="eu"), "confidential", TenantFacts("bank2", "ch"), None),
    (dep("special", region="eu"), "confidential", TenantFacts("bank"), "compliance.jurisdiction_rules[1]"),
    # allow never beats jurisdiction or deny
    (dep("azure-ch", "azure", model_name="gpt-4o", region="ch"), "confidential", TenantFacts("bank"),
     "compliance.jurisdiction_rules[1]"),
])
def test_filter_deployments(deployment: Deployment, data_class: str, tenant: TenantFacts, rule: str | None) -> None:
    result = filter_deployments([deployment], data_class, tenant, COMPLIANCE)
    if rule is None:
        assert result.allowed == (deployment,) and result.excluded == ()
    else:
        assert result.allowed == ()
        assert [(c.deployment_id, c.verdict, c.rule) for c in result.excluded] == [(deployment.id, "excluded", rule)]
        assert result.excluded[0].reason


def test_filter_keeps_order_and_passes_everything_without_compliance() -> None:
    deps = [dep("a", region="us"), dep("b", region="apac"), dep("c", region="eu")]
    assert [d.id for d in filter_deployments(deps, "internal", NOBODY, COMPLIANCE).allowed] == ["a", "c"]
    assert filter_deployments(deps, None, NOBODY, None).allowed == tuple(deps)


def test_jurisdiction_reason_is_the_configured_one() -> None:
    result = filter_deployments([dep("b", "bedrock", region="eu")], "internal", ACME, COMPLIANCE)
    assert result.excluded[0].reason == "EU data stays out of US regions"
