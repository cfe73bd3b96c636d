"""The part of a routing decision that does not depend on the request body (pure, memoised).

For one config (:class:`policies.decide.Policies`), tenant, public model, ``X-Data-Class``
value and deployment group, these never change: the tenant's facts, the model's routing
settings, the data class the header asks for (or its denial), and, for each final data
class the personal-data rules may end on, which deployments compliance allows. A
:class:`Prepared` holds them, the latter filled in lazily per data class, so that a
request only does the body-dependent steps (personal data, capabilities, health, the
strategy). ``decide`` without one builds a fresh one, so both paths run the same code;
tests/test_policy_prepared.py checks that a reused one decides exactly as a fresh one.

Whoever keeps a :class:`Prepared` must drop it with the config it came from (the gateway
keeps one per snapshot: gateway/proxy/router.py). Health, latency, prices and outcomes are
never part of it: they are read per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from policies.compliance import (
    ClassDecision,
    Filtered,
    TenantFacts,
    check_deployment,
    effective_class,
    filter_deployments,
    tenant_facts,
)
from policies.schema import ComplianceSection, ModelRouting, RoutingSection, TenantPolicy
from providers.base import Deployment

# The default for an absent routing section, built once (pydantic models cost to build)
DEFAULT_MODEL_ROUTING = ModelRouting()


@dataclass(slots=True)
class Prepared:
    """What decisions for one (config, tenant, model, header, group) share; see the module doc."""

    deployments: tuple[Deployment, ...]  # the group it was prepared for, in model_list order
    tenant: TenantFacts
    model_routing: ModelRouting
    data_class: ClassDecision  # the class before personal data is looked at
    compliance: ComplianceSection | None
    index: Mapping[str, int]  # deployment id -> position in ``deployments``
    _compliant: dict[str | None, tuple[Filtered, frozenset[str]]] = field(default_factory=dict)

    def compliant(self, data_class: str | None) -> tuple[Filtered, frozenset[str]]:
        """The deployments compliance allows for ``data_class`` (with why the others are not), and
        the ids :func:`policies.compliance.check_deployment` passes, worked out once per class."""
        found = self._compliant.get(data_class)
        if found is None:
            filtered = filter_deployments(self.deployments, data_class, self.tenant, self.compliance)
            passing = frozenset(d.id for d in self.deployments
                                if check_deployment(d, data_class, self.tenant, self.compliance) is None)
            found = self._compliant[data_class] = (filtered, passing)
        return found


def prepare(tenant: str, model: str, data_class_header: str | None, deployments: Sequence[Deployment],
            routing: RoutingSection | None, compliance: ComplianceSection | None,
            tenants: Mapping[str, TenantPolicy] | None) -> Prepared:
    facts = tenant_facts(tenant, tenants)
    group = tuple(deployments)
    return Prepared(group, facts, routing.for_model(model) if routing else DEFAULT_MODEL_ROUTING,
                    effective_class(facts, data_class_header, compliance), compliance,
                    {d.id: i for i, d in enumerate(group)})
