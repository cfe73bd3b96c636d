"""The routing, compliance and tenants config sections: what validates, what does not, and
the README's examples."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from policies.schema import (
    ComplianceSection,
    RoutingSection,
    TenantPolicy,
    check_references,
)

README = Path(__file__).resolve().parent.parent / "policies" / "README.md"


def readme_sections() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S):
        merged.update(yaml.safe_load(block))
    return merged


def test_readme_examples_validate() -> None:
    doc = readme_sections()
    assert set(doc) == {"compliance", "tenants", "routing"}
    compliance = ComplianceSection.model_validate(doc["compliance"])
    routing = RoutingSection.model_validate(doc["routing"])
    tenants = {k: TenantPolicy.model_validate(v) for k, v in doc["tenants"].items()}
    assert compliance.class_names() == ["public", "internal", "confidential", "restricted"]
    assert compliance.jurisdiction_rules[1].for_.tenants == ["bank-a"]
    assert routing.models["assistant"].tiers == [["gpt-4o-azure-eu"], ["gpt-4o-mini-eu"], ["llama-local"]]
    assert tenants["research"].may_lower_class


def test_defaults() -> None:
    routing = RoutingSection()
    assert (routing.breaker.failures, routing.breaker.cooldown_s, routing.breaker.half_open_probes) == (5, 30.0, 1)
    assert routing.for_model("anything").strategy == "priority"
    assert RoutingSection(default_strategy="cost").for_model("x").strategy == "cost"


CLASSES = [{"name": "public"}, {"name": "internal"}, {"name": "secret"}]


@pytest.mark.parametrize("section, raw, message", [
    (RoutingSection, {"models": {"m": {"strategy": "fastest"}}}, "Input should be"),
    (RoutingSection, {"models": {"m": {"strategy": "priority", "weights": {"a": 1}}}}, "only used by strategy 'weighted'"),
    (RoutingSection, {"models": {"m": {"strategy": "weighted", "weights": {"a": -1}}}}, ">= 0"),
    (RoutingSection, {"models": {"m": {"strategy": "budget"}}}, "needs 'tiers'"),
    (RoutingSection, {"models": {"m": {"strategy": "budget", "tiers": [["a"], []]}}}, "needs 'tiers'"),
    (RoutingSection, {"models": {"m": {"strategy": "budget", "tiers": [["a"], ["a"]]}}}, "only one budget tier"),
    (RoutingSection, {"models": {"m": {"strategy": "cost", "low_budget_usd": 1}}}, "only used by strategy 'budget'"),
    (RoutingSection, {"models": {"m": {"strategy": "latency", "alpha": 0}}}, "greater than 0"),
    (RoutingSection, {"default_strategy": "weighted"}, "per-model settings"),
    (RoutingSection, {"breaker": {"failures": 0}}, "greater than or equal to 1"),
    (RoutingSection, {"breaker": {"failure": 3}}, "Extra inputs"),
    (ComplianceSection, {"default_class": "internal", "data_classes": []}, "at least 1"),
    (ComplianceSection, {"default_class": "nope", "data_classes": CLASSES}, "default_class 'nope'"),
    (ComplianceSection, {"default_class": "public", "data_classes": CLASSES + [{"name": "public"}]},
     "more than once"),
    (ComplianceSection, {"default_class": "public", "data_classes": [{"name": "Public"}]}, "should match pattern"),
    (ComplianceSection, {"default_class": "public", "data_classes": [
        {"name": "public"}, {"name": "internal", "pii": {"email": "escalate", "escalate_to": "public"}}]},
     "must be a stricter class"),
    (ComplianceSection, {"default_class": "public", "data_classes": [
        {"name": "public", "pii": {"email": "escalate"}}]}, "needs 'escalate_to"),
    (ComplianceSection, {"default_class": "public", "data_classes": [
        {"name": "public", "pii": {"email": "shred"}}]}, "Input should be"),
    (ComplianceSection, {"default_class": "public", "data_classes": [
        {"name": "public", "pii": {"escalate_to": "public"}}]}, "no kind of PII uses 'escalate'"),
    (ComplianceSection, {"default_class": "public", "data_classes": [{"name": "public", "region": ["eu"]}]},
     "Extra inputs"),
    (ComplianceSection, {"default_class": "public", "data_classes": CLASSES,
                         "jurisdiction_rules": [{"deny": {}, "reason": "x"}]}, "at least one of"),
    (ComplianceSection, {"default_class": "public", "data_classes": CLASSES,
                         "jurisdiction_rules": [{"deny": {"models": ["m"]}}]}, "Field required"),
    (ComplianceSection, {"default_class": "public", "data_classes": CLASSES, "jurisdiction_rules": [
        {"deny": {"models": ["m"]}, "for": {"data_classes": ["top"]}, "reason": "x"}]}, "unknown class top"),
    (TenantPolicy, {"region": "eu", "may_lower": True}, "Extra inputs"),
])
def test_invalid_sections(section: type, raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        section.model_validate(raw)


def test_sections_are_frozen() -> None:
    routing = RoutingSection()
    with pytest.raises(ValidationError):
        routing.assumed_output_tokens = 5  # type: ignore[misc]


def test_check_references() -> None:
    doc = readme_sections()
    groups = {"gpt-4o": ["gpt-4o-azure-eu", "gpt-4o-openai"], "assistant": ["gpt-4o-azure-eu", "llama-local"],
              "chat-fast": ["x"], "chat-cheap": ["y"], "triage": ["llama-local", "gpt-4o-openai"]}
    problems = check_references(RoutingSection.model_validate(doc["routing"]),
                                ComplianceSection.model_validate(doc["compliance"]),
                                {**{k: TenantPolicy.model_validate(v) for k, v in doc["tenants"].items()},
                                 "ghost": TenantPolicy(default_class="top-secret")},
                                groups)
    assert problems == [
        ("routing.models.assistant.tiers", "'gpt-4o-mini-eu'", "not a deployment id of model 'assistant'"),
        ("compliance.data_classes[confidential].allow", "'azure-gpt4o-sweden'",
         "not a deployment id or model_name in model_list"),
        ("tenants.ghost.default_class", "'top-secret'",
         "unknown data class (known: public, internal, confidential, restricted)"),
    ]


def test_check_references_without_compliance() -> None:
    assert check_references(None, None, {"t": TenantPolicy(default_class="x")}, {}) == [
        ("tenants.t.default_class", "'x'", "there is no compliance section defining data classes")]
    assert check_references(RoutingSection.model_validate({"models": {"ghost": {}}}), None, None, {}) == [
        ("routing.models.ghost", "'ghost'", "not a model_name in model_list")]
