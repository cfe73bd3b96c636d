"""The values every policy step returns: what was decided and why.

``rule`` is always the config key that made the decision (e.g.
``compliance.data_classes[confidential].regions``), so an explain response or
an audit record points a reader at the line of YAML to look at. Nothing here
ever holds request text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

EXCLUDED, CHOSEN, FALLBACK = "excluded", "chosen", "fallback"


@dataclass(frozen=True, slots=True)
class Denial:
    """The request is refused. ``status`` is the HTTP status the gateway answers with."""

    status: int  # 400 bad request, 403 policy, 429 budget, 503 nothing usable
    code: str  # OpenAI error ``code``, e.g. ``pii_blocked``
    message: str  # safe for the client: names rules and kinds, never request text
    rule: str
    retry_after: float | None = None  # seconds, for 429/503
    param: str | None = None  # the request parameter the denial is about, if one is


@dataclass(frozen=True, slots=True)
class Consideration:
    """One deployment's fate in a decision."""

    deployment_id: str
    verdict: str  # chosen | fallback | excluded
    rule: str  # for an exclusion, the rule that excluded it; else the strategy
    reason: str
    position: int | None = None  # index in ``Decision.ordered``


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Something a compliance reviewer wants on record (never prompt text)."""

    kind: str  # denial | redaction | escalation | class_lowered | class_raised
    rule: str
    reason: str
    detail: Mapping[str, str | int] = field(default_factory=lambda: MappingProxyType({}))


def excluded(dep_id: str, rule: str, reason: str) -> Consideration:
    return Consideration(dep_id, EXCLUDED, rule, reason)


def frozen(mapping: Mapping[str, str | int]) -> Mapping[str, str | int]:
    return MappingProxyType(dict(mapping))
