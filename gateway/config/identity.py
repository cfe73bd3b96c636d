"""Who is calling (a value the edge builds from the key; the rest of the gateway reads it)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from decimal import Decimal

MAX_KEY_BYTES = 512  # a longer bearer token is not a key: refused before any hashing


def key_digest(secret: bytes, token: str) -> bytes:
    """What a key is stored and looked up as: ``HMAC-SHA256(secret, key)``, never the key itself."""
    return hmac.new(secret, token.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()


def keyed(secret: bytes) -> hmac.HMAC:
    """HMAC-SHA256 keyed with ``secret`` and nothing hashed yet, to copy for each key (:func:`digest_with`):
    keying once instead of per lookup halves the cost of a digest (~2 -> ~1 µs)."""
    return hmac.new(secret, digestmod=hashlib.sha256)


def digest_with(keyed_hmac: hmac.HMAC, token: str) -> bytes:
    """``key_digest(secret, token)`` where ``keyed_hmac`` is ``keyed(secret)`` (left unchanged)."""
    h = keyed_hmac.copy()
    h.update(token.encode("utf-8", "surrogateescape"))
    return h.digest()


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
    person_budget_usd: Decimal | None = None  # an agent's person's key budget (its spend counts there too)
    # an agent's person's key's own (rpm, tpm), when that key is a virtual key: the agent's requests
    # count in the person's buckets too (keys from the config are looked up by the limiter)
    person_limits: tuple[int | None, int | None] | None = None

    @property
    def actor(self) -> str:
        """The bounded metrics label: ``agent`` for an agent key, else ``human``."""
        return "agent" if self.agent else "human"


__all__ = ["MAX_KEY_BYTES", "Tenant", "digest_with", "key_digest", "keyed"]
