"""Rate limits: which limits a request is under, and GCRA's arithmetic (pure: no I/O, no clock).

Every limit is a *GCRA* bucket (the generic cell rate algorithm, the arithmetic of a
leaky bucket kept as one number per bucket): its *theoretical arrival time* ``tat``,
in microseconds of the store's clock. A bucket of ``per_minute`` units has an
*interval* of ``60 s / per_minute`` per unit and a *depth* of ``burst_s`` seconds
(at least one interval). A request that costs ``n`` units adds ``increment = ceil(n *
interval)`` to the bucket's debt ``level = max(tat, now) - now``, and is admitted when

    level + increment <= depth        or  level == 0 (the bucket is full)

The second clause admits a request larger than the whole bucket (a TPM worst case
above ``tpm * burst_s / 60``) when the bucket is full, and puts the bucket into debt;
otherwise such a request could never pass. A request is admitted only if *every*
bucket it is under admits it, and then each is charged; a refused request charges
nothing and waits ``max(level + min(increment, depth) - depth)``.

**The bound.** GCRA admits at most ``depth / interval + W / interval`` units in any
window of ``W`` seconds: ``per_minute * (burst_s + W) / 60``. With the default
``burst_s: 60`` that is the minute's limit at once, then the rate: in any rolling
minute at most twice the limit; ``burst_s: 1`` makes it ``limit * 61/60``. Replicas add
nothing: all of them run one Lua script on one Redis with the store's clock (TIME).
The oversize clause adds at most one request beyond a full bucket per time the bucket
drains completely.

This module is the specification of :data:`gateway.ledger.limiter.CHECK`: the same
arithmetic in Lua, which ``tests/test_limits_gcra.py`` runs side by side with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from gateway.config.identity import Tenant
from gateway.config.schema import LimitsSection

MINUTE_US = 60_000_000
REQUESTS, TOKENS = "requests", "tokens"
NO_LIMITS: tuple["Limit", ...] = ()


@dataclass(frozen=True, slots=True)
class Limit:
    """One bucket: ``key`` in the store, its dimension (requests or tokens), its rate, its depth.
    Build with :func:`limit` (the interval and depth are worked out once, not per request)."""

    key: str  # tg:{tenant}:rl:<rpm|tpm>:<tenant|key:<id>>
    dimension: str  # REQUESTS | TOKENS
    per_minute: int
    scope: str  # for messages: "tenant 'acme'", "key 'k1'"
    interval_us: float  # 60 s / per_minute
    depth_us: int  # burst_s, at least one interval

    def increment(self, units: int) -> int:
        return math.ceil(units * self.interval_us)

    def remaining(self, level_us: int) -> int:
        """Units that would still be admitted now, with the bucket at ``level_us`` of debt."""
        return max(0, int((self.depth_us - level_us) // self.interval_us))


def limit(key: str, dimension: str, per_minute: int, burst_s: float, scope: str) -> Limit:
    interval = MINUTE_US / per_minute
    return Limit(key, dimension, per_minute, scope, interval, max(round(burst_s * 1_000_000), math.ceil(interval)))


def limits_for(tenant: Tenant, section: LimitsSection,
               person: tuple[int | None, int | None] | None = None) -> tuple[Limit, ...]:
    """The buckets a request of ``tenant`` is under: its tenant's (``limits.tenants.<name>``, else
    ``limits.default``), its key's (``Tenant.rpm``/``tpm``) and, for an agent key, its person's key's
    (``person``: that key's (rpm, tpm)). All keys carry the ``{tenant}`` hash tag: one slot."""
    tenant_limit = section.tenants.get(tenant.name) or section.default
    if tenant_limit is None and tenant.rpm is None and tenant.tpm is None and person is None:
        return NO_LIMITS  # the common case: nothing to check, no store round trip
    base = "tg:{" + tenant.name + "}:rl:"
    burst = section.burst_s
    out: list[Limit] = []

    def add(scope_key: str, scope: str, rpm: int | None, tpm: int | None) -> None:
        if rpm is not None:
            out.append(limit(f"{base}rpm:{scope_key}", REQUESTS, rpm, burst, scope))
        if tpm is not None:
            out.append(limit(f"{base}tpm:{scope_key}", TOKENS, tpm, burst, scope))

    if tenant.key_id is not None:
        add(f"key:{tenant.key_id}", f"key '{tenant.key_id}'", tenant.rpm, tenant.tpm)
    if tenant.person is not None and person is not None:
        add(f"key:{tenant.person}", f"key '{tenant.person}' (the person this agent acts for)", *person)
    if tenant_limit is not None:
        add("tenant", f"tenant '{tenant.name}'", tenant_limit.rpm, tenant_limit.tpm)
    return tuple(out)


def units(limit: Limit, tokens: int) -> int:
    """What one request costs in ``limit``'s dimension."""
    return 1 if limit.dimension == REQUESTS else tokens


# --- GCRA, as the Lua scripts do it ---------------------------------------------------------

def gcra(tat: int, now: int, increment: int, depth: int) -> tuple[bool, int, int]:
    """One bucket: (admitted, the new tat, microseconds to wait when refused)."""
    base = max(tat, now)
    level = base - now
    if level + increment <= depth or level == 0:
        return True, base + increment, 0
    return False, tat, level + min(increment, depth) - depth


@dataclass(frozen=True, slots=True)
class Verdict:
    admitted: bool
    wait_us: int  # when refused: how long until the request would fit
    levels: tuple[int, ...]  # each bucket's debt after the request (or as it stands, when refused)


def check(tats: Sequence[int], now: int, increments: Sequence[int], depths: Sequence[int]) -> tuple[Verdict, list[int]]:
    """All buckets at once: admitted only if each admits; then (the verdict, the new tats)."""
    results = [gcra(t, now, i, d) for t, i, d in zip(tats, increments, depths)]
    if all(ok for ok, _, _ in results):
        new = [tat for _, tat, _ in results]
        return Verdict(True, 0, tuple(t - now for t in new)), new
    wait = max(w for _, _, w in results)
    return Verdict(False, wait, tuple(max(t, now) - now for t in tats)), list(tats)


def settle(tat: int, now: int, delta: int) -> int | None:
    """The tat after returning (``delta`` < 0) or adding (> 0) microseconds of a bucket's charge;
    None: the bucket is full (the key can go)."""
    base = max(tat, now) if delta > 0 else tat
    new = base + delta
    return new if new > now else None


# --- what the client is told --------------------------------------------------------------

def duration(us: int) -> str:
    """OpenAI's reset format (Go's durations): ``20ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    ms = max(0, math.ceil(us / 1000))
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    return f"{minutes}m{seconds}" if minutes else seconds


_NAMES = {dim: tuple(f"x-ratelimit-{what}-{dim}".encode() for what in ("limit", "remaining", "reset"))
          for dim in (REQUESTS, TOKENS)}


def headers(limits: Sequence[Limit], levels: Sequence[int]) -> tuple[tuple[bytes, bytes], ...]:
    """OpenAI's ``x-ratelimit-*`` headers: per dimension, the bucket with the fewest units left."""
    best: dict[str, tuple[int, int, int]] = {}  # dimension -> (remaining, per minute, level)
    for lim, lvl in zip(limits, levels):
        entry = (lim.remaining(lvl), lim.per_minute, lvl)
        if lim.dimension not in best or entry < best[lim.dimension]:
            best[lim.dimension] = entry
    out: list[tuple[bytes, bytes]] = []
    for dim, (left, per_minute, lvl) in best.items():
        names = _NAMES[dim]
        out += [(names[0], b"%d" % per_minute), (names[1], b"%d" % left), (names[2], duration(lvl).encode())]
    return tuple(out)


def retry_after_s(wait_us: int) -> int:
    """``retry-after``: whole seconds, at least 1."""
    return max(1, math.ceil(wait_us / 1_000_000))


def refusal(limits: Sequence[Limit], tats: Sequence[int], now: int, increments: Sequence[int],
            tokens: int) -> str:
    """The message of a 429: which limit, what it allows, what this request needed."""
    for lim, tat, inc in zip(limits, tats, increments):
        if not gcra(tat, now, inc, lim.depth_us)[0]:
            what = "requests" if lim.dimension == REQUESTS else "tokens"
            need = "" if lim.dimension == REQUESTS else f"; this request may use up to {tokens} tokens"
            return (f"rate limit reached for {what} per minute of {lim.scope}: the limit is {lim.per_minute}, "
                    f"{lim.remaining(max(tat, now) - now)} left now{need}")
    return "rate limit reached"


def person_limits(keys: Mapping[bytes, Tenant]) -> dict[str, tuple[int | None, int | None]]:
    """Key id -> (rpm, tpm) of every configured key that has a limit (for agents' persons)."""
    return {t.key_id: (t.rpm, t.tpm) for t in keys.values()
            if t.key_id is not None and (t.rpm is not None or t.tpm is not None)}
