"""Who is calling (a value the edge builds from the key; the rest of the gateway reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Tenant:
    """Who is calling: the tenant a key belongs to, and what that key may do.

    ``name`` is the tenant every record, budget and list is scoped to. The rest describes the
    key that authenticated (absent when no auth is configured): an agent key has ``agent`` (its
    name) and ``person`` (the key id of the person it acts for); a person's key has neither.
    ``models``/``rpm``/``tpm``/``budget_usd`` are the key's scope (None: no narrowing)."""

    name: str
    admin: bool = False
    key_id: str | None = None
    person: str | None = None
    agent: str | None = None
    models: frozenset[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: Decimal | None = None

    @property
    def actor(self) -> str:
        """The bounded metrics label: ``agent`` for an agent key, else ``human``."""
        return "agent" if self.agent else "human"


__all__ = ["Tenant"]
