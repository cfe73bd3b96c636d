"""Which deployments may serve a request, in the order to try them (pure).

The core routes by priority: the deployments of a public model in config
order, falling back to the next on a retryable failure. Strategies, health and
compliance plug in here (see the routing and compliance issue).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from providers.base import Deployment


@dataclass(frozen=True, slots=True)
class Plan:
    model: str
    deployments: tuple[Deployment, ...]  # in the order to try


class UnknownModel(LookupError):
    pass


class NoDeployment(LookupError):
    """The model exists but none of its deployments is enabled."""


def plan(groups: Mapping[str, tuple[Deployment, ...]], model: str, disabled_reasons: tuple[str, ...] = ()) -> Plan:
    group = groups.get(model)
    if group is None:
        raise UnknownModel(model)
    if not group:
        raise NoDeployment("; ".join(disabled_reasons) or "no deployment is configured")
    return Plan(model, group)
