"""Compliance: which data class a request carries, what its personal data does, and
which deployments may see it (pure).

The three steps, in the order :func:`policies.decide.decide` applies them:

1. :func:`effective_class` -- the tenant's default class, raised (never lowered,
   unless the tenant ``may_lower_class``) by the ``X-Data-Class`` header.
2. :func:`apply_pii` -- personal data found in the text is allowed, redacted,
   escalates the request to a stricter class (and the new class's rules apply
   in turn), or blocks the request; ``block`` wins over ``escalate`` over ``redact``.
3. :func:`filter_deployments` -- for each deployment, first match wins:

       class deny list        (deny)          never allowed
       jurisdiction rules     (jurisdiction)  never allowed for the tenants they name
       class allow list       (allow)         allowed whatever its attributes
       class attributes       (regions, open_weight, kinds, model_info)
                                              allowed when it meets all of them
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from policies import pii
from policies.schema import ComplianceSection, DataClass, JurisdictionRule, TenantPolicy
from policies.verdicts import AuditEvent, Consideration, Denial, excluded, frozen
from providers.base import Deployment


@dataclass(frozen=True, slots=True)
class TenantFacts:
    name: str
    region: str | None = None
    default_class: str | None = None  # None: compliance.default_class
    may_lower_class: bool = False


def tenant_facts(name: str, tenants: Mapping[str, TenantPolicy] | None) -> TenantFacts:
    """A tenant not listed under ``tenants`` has no region and the default class."""
    policy = (tenants or {}).get(name)
    if policy is None:
        return TenantFacts(name)
    return TenantFacts(name, policy.region, policy.default_class, policy.may_lower_class)


# --- 1. the data class -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClassDecision:
    data_class: str | None  # None only when there is no compliance section
    source: str  # none | default | tenant | header
    denial: Denial | None = None
    events: tuple[AuditEvent, ...] = ()


def effective_class(tenant: TenantFacts, header_value: str | None,
                    compliance: ComplianceSection | None) -> ClassDecision:
    """The class a request is handled as.

    No header: the tenant's ``default_class`` (else ``compliance.default_class``).
    A header naming the same or a stricter class raises it. A less strict class
    is a 403 unless the tenant ``may_lower_class``. An unknown class is a 400, and
    so is any header when no data classes are configured (it cannot be honoured).
    """
    wanted = (header_value or "").strip().lower() or None
    if compliance is None:
        if wanted is None:
            return ClassDecision(None, "none")
        return ClassDecision(None, "header", Denial(400, "unknown_data_class", (
            f"X-Data-Class '{wanted}' cannot be honoured: this gateway defines no data classes"), "compliance"))
    base, source = (tenant.default_class, "tenant") if tenant.default_class else (compliance.default_class, "default")
    names = compliance.class_names()
    if base not in names:  # config.check_references reports this; fail closed if it slipped through
        return ClassDecision(None, source, Denial(403, "unknown_data_class", (
            f"tenant '{tenant.name}' has default_class '{base}', which is not a data class"),
            f"tenants.{tenant.name}.default_class"))
    if wanted is None:
        return ClassDecision(base, source)
    if wanted not in names:
        return ClassDecision(base, source, Denial(400, "unknown_data_class", (
            f"X-Data-Class '{wanted}' is not a data class; known: {', '.join(names)}"), "compliance.data_classes"))
    if compliance.rank(wanted) >= compliance.rank(base):
        events = () if wanted == base else (AuditEvent("class_raised", "X-Data-Class", f"{base} -> {wanted}"),)
        return ClassDecision(wanted, "header", None, events)
    rule = f"tenants.{tenant.name}.may_lower_class"
    if not tenant.may_lower_class:
        reason = f"tenant '{tenant.name}' may not lower its data class from '{base}' to '{wanted}'"
        return ClassDecision(base, source, Denial(403, "data_class_lowering_denied", reason, rule),
                             (AuditEvent("denial", rule, reason),))
    return ClassDecision(wanted, "header", None, (AuditEvent("class_lowered", rule, f"{base} -> {wanted}"),))


# --- 2. personal data ------------------------------------------------------------------


_NONE: Mapping[str, int] = MappingProxyType({})


def _counts(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(counts))


@dataclass(frozen=True, slots=True)
class PiiDecision:
    data_class: str | None  # the class after any escalation
    body: Mapping[str, Any]  # the input body, or a redacted copy
    found: Mapping[str, int]  # kind -> count, everything detected
    redacted: Mapping[str, int]  # kind -> count, what was redacted
    denial: Denial | None = None
    events: tuple[AuditEvent, ...] = ()


def apply_pii(body: Mapping[str, Any], data_class: str | None,
              compliance: ComplianceSection | None) -> PiiDecision:
    """Apply the ``pii`` rules of ``data_class`` (and of each class it escalates to)."""
    if compliance is None or data_class is None:
        return PiiDecision(data_class, body, _counts({}), _counts({}))
    found = pii.detect_body(body)
    if not found:  # the common case: what the rules below give for no findings, without the work
        return PiiDecision(data_class, body, _NONE, _NONE)
    counts = Counter(h.kind for f in found for h in f.hits)
    events: list[AuditEvent] = []
    cls = data_class
    while True:
        rules = compliance.get(cls).pii
        actions = {kind: rules.action(kind) for kind in sorted(counts)}
        blocked = [k for k, a in actions.items() if a == "block"]
        if blocked:
            rule = f"compliance.data_classes[{cls}].pii.{blocked[0]}"
            reason = f"the request contains {_kinds(blocked, counts)}, which data class '{cls}' blocks"
            events.append(AuditEvent("denial", rule, reason, frozen({k: counts[k] for k in blocked})))
            return PiiDecision(cls, body, _counts(counts), _counts({}), Denial(403, "pii_blocked", reason, rule),
                               tuple(events))
        escalating = [k for k, a in actions.items() if a == "escalate"]
        if not escalating:
            break
        target = str(rules.escalate_to)
        events.append(AuditEvent("escalation", f"compliance.data_classes[{cls}].pii.escalate_to",
                                 f"{_kinds(escalating, counts)} found: {cls} -> {target}",
                                 frozen({k: counts[k] for k in escalating})))
        cls = target
    to_redact = frozenset(k for k, a in actions.items() if a == "redact")
    if not to_redact:
        return PiiDecision(cls, body, _counts(counts), _counts({}), None, tuple(events))
    redacted = {k: counts[k] for k in sorted(to_redact)}
    fields = sorted({f.where for f in found if any(h.kind in to_redact for h in f.hits)})
    events.append(AuditEvent("redaction", f"compliance.data_classes[{cls}].pii",
                             f"redacted {_kinds(sorted(to_redact), counts)}",
                             frozen({**redacted, "fields": ", ".join(fields)})))
    return PiiDecision(cls, pii.redact_body(body, found, to_redact), _counts(counts), _counts(redacted), None,
                       tuple(events))


def _kinds(kinds: Iterable[str], counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} ({counts[k]})" for k in kinds)


# --- 3. deployments ----------------------------------------------------------------------


def _info(dep: Deployment, key: str) -> Any:
    return dep.model_info.get(key)


def _lower(values: Iterable[Any]) -> list[str]:
    return [str(v).lower() for v in values]


def _region(dep: Deployment) -> str | None:
    region = _info(dep, "region")
    return None if region is None else str(region).lower()


# Attribute constraints of a data class: (key, check) where check returns why the
# deployment fails it, or None. A constraint that is not set (None) passes.
ATTRIBUTES: tuple[tuple[str, Callable[[Deployment, DataClass], str | None]], ...] = (
    ("regions", lambda d, c: None if c.regions is None or _region(d) in _lower(c.regions)
        else f"region {_info(d, 'region')!r} is not one of {', '.join(c.regions)}"),
    ("open_weight", lambda d, c: None if not c.open_weight or _info(d, "open_weight") is True
        else "not an open-weight model (model_info.open_weight is not true)"),
    ("kinds", lambda d, c: None if c.kinds is None or d.kind in c.kinds
        else f"provider kind '{d.kind}' is not one of {', '.join(c.kinds)}"),
    ("model_info", lambda d, c: next((f"model_info.{k} is {_info(d, k)!r}, not one of {vals}"
                                      for k, vals in (c.model_info or {}).items() if _info(d, k) not in vals), None)),
)


def rule_applies(rule: JurisdictionRule, tenant: TenantFacts, data_class: str | None) -> bool:
    """Every selector given in ``for`` must match; a rule with no selector applies to everyone."""
    scope = rule.for_
    region = (tenant.region or "").lower()
    return ((scope.tenants is None or tenant.name in scope.tenants)
            and (scope.tenant_regions is None or region in _lower(scope.tenant_regions))
            and (scope.data_classes is None or data_class in scope.data_classes))


def rule_denies(rule: JurisdictionRule, dep: Deployment) -> bool:
    """Any target listed in ``deny`` matching the deployment denies it."""
    deny = rule.deny
    return (dep.model_name in deny.models or dep.kind in deny.providers or dep.id in deny.deployments
            or (_region(dep) is not None and _region(dep) in _lower(deny.regions)))


def check_deployment(dep: Deployment, data_class: str | None, tenant: TenantFacts,
                     compliance: ComplianceSection | None) -> Consideration | None:
    """None when ``dep`` may receive data of ``data_class`` for ``tenant``; else why not."""
    if compliance is None or data_class is None:
        return None
    dc = compliance.get(data_class)
    where = f"compliance.data_classes[{dc.name}]"
    if dep.id in dc.deny or dep.model_name in dc.deny:
        return excluded(dep.id, f"{where}.deny", f"listed in the deny list of data class '{dc.name}'")
    for i, rule in enumerate(compliance.jurisdiction_rules):
        if rule_applies(rule, tenant, data_class) and rule_denies(rule, dep):
            return excluded(dep.id, f"compliance.jurisdiction_rules[{i}]", rule.reason)
    if dep.id in dc.allow or dep.model_name in dc.allow:
        return None
    for key, check in ATTRIBUTES:
        why = check(dep, dc)
        if why is not None:
            return excluded(dep.id, f"{where}.{key}", f"data class '{dc.name}': {why}")
    return None


@dataclass(frozen=True, slots=True)
class Filtered:
    allowed: tuple[Deployment, ...]  # in the order given
    excluded: tuple[Consideration, ...]


def filter_deployments(deployments: Iterable[Deployment], data_class: str | None, tenant: TenantFacts,
                       compliance: ComplianceSection | None) -> Filtered:
    allowed, out = [], []
    for dep in deployments:
        verdict = check_deployment(dep, data_class, tenant, compliance)
        if verdict is None:
            allowed.append(dep)
        else:
            out.append(verdict)
    return Filtered(tuple(allowed), tuple(out))
