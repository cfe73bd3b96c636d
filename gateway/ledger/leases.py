"""Local leases on shared rate-limit buckets: most requests under a large limit need no store call.

A request under a limit whose rate is high next to the request's own cost takes, with its
own charge, a *lease* on each of its buckets: more of the bucket's time (GCRA debt), sized
to what this process used of its previous lease (twice that, at least ``MIN_REQUESTS``
requests like this one, at most ``LEASE_US``: 50 ms of the rate). Requests that follow in
this process are admitted against the lease with no round trip until it runs out or
``LEASE_TTL_S`` passes; then one request takes a new one while the others wait for it, and
what was left of the old one is given back to the store in the background. Token
settlements credit the lease they were charged to, while it lasts, instead of calling the
store.

Why the bound holds: a lease is charged to the shared bucket *before* anything is admitted
against it, so what every replica admits stays within what the store's GCRA allowed
(``per_minute * (burst_s + W) / 60`` in any window of W seconds, see
:mod:`gateway.ledger.limits`). The cost is on the other side: until a lease is given back,
its unused part is held back from other replicas (at most ``LEASE_US`` of each bucket per
replica), so near the limit a replica may be refused a little early, never admitted late.
``x-ratelimit-remaining-*`` on a response admitted from a lease is the count as of the
lease (at most ``LEASE_TTL_S`` old).

A small limit (rpm 120, or a TPM bucket next to a large worst case: less than
``MIN_REQUESTS`` requests in ``LEASE_US``) is checked in the store on every request, as before.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Sequence

LEASE_US = 50_000  # of each bucket's time: 50 ms of its rate
LEASE_TTL_S = 0.05
MIN_REQUESTS = 4  # a lease must hold at least this many requests like the one that takes it
MAX_LEASES = 10_000


def leasable(increments: Sequence[int]) -> bool:
    """Worth a lease: every bucket's share of this request is small next to ``LEASE_US``."""
    return all(inc * MIN_REQUESTS <= LEASE_US for inc in increments)


@dataclass(slots=True)
class Lease:
    """What is left of one set of buckets' lease, in microseconds of each bucket's time."""

    left: list[int]
    expires: float  # time.monotonic()
    headers: tuple[tuple[bytes, bytes], ...]
    size: list[int] = field(default_factory=list)

    def take(self, increments: Sequence[int], now: float) -> bool:
        if now >= self.expires or any(have < inc for have, inc in zip(self.left, increments)):
            return False
        for i, inc in enumerate(increments):
            self.left[i] -= inc
        return True

    def credit(self, deltas: Sequence[tuple[int, int]], now: float) -> bool:
        """``deltas``: (bucket index, µs to add to the charge, < 0 to return). False: expired."""
        if now >= self.expires:
            return False
        for i, delta in deltas:
            self.left[i] -= delta
        return True


@dataclass
class Leases:
    """This process's leases, by the tuple of bucket keys a request is under."""

    by_keys: dict[tuple[str, ...], Lease] = field(default_factory=dict)
    pending: dict[tuple[str, ...], asyncio.Future[None]] = field(default_factory=dict)  # one fetch at a time

    def take(self, keys: tuple[str, ...], increments: Sequence[int]) -> Lease | None:
        lease = self.by_keys.get(keys)
        if lease is not None and lease.take(increments, time.monotonic()):
            return lease
        return None

    def next_size(self, keys: tuple[str, ...], increments: Sequence[int]) -> list[int]:
        """Twice what this process used of its last lease, within [MIN_REQUESTS requests, LEASE_US]."""
        old = self.by_keys.get(keys)
        used = [s - left for s, left in zip(old.size, old.left)] if old is not None else [0] * len(increments)
        return [min(LEASE_US, max(MIN_REQUESTS * inc, 2 * u)) for inc, u in zip(increments, used)]

    def leftover(self, keys: tuple[str, ...]) -> list[int]:
        """What the current lease still holds (to give back when it is replaced)."""
        old = self.by_keys.get(keys)
        return [max(0, left) for left in old.left] if old is not None else []

    def grant(self, keys: tuple[str, ...], size: list[int], headers: tuple[tuple[bytes, bytes], ...]) -> Lease:
        if len(self.by_keys) >= MAX_LEASES:
            self.by_keys.clear()
        lease = Lease(list(size), time.monotonic() + LEASE_TTL_S, headers, list(size))
        self.by_keys[keys] = lease
        return lease


__all__ = ["LEASE_US", "LEASE_TTL_S", "Lease", "Leases", "leasable"]
