"""Local leases on rate-limit buckets (gateway/ledger/leases.py): under a large limit most
requests make no store call, two replicas on one real Redis still admit no more than the
store's GCRA allows, and small limits are checked in the store on every request as before."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from gateway.config.identity import Tenant
from gateway.config.load import parse
from gateway.errors import RateLimited
from gateway.ledger.leases import LEASE_TTL_S, LEASE_US, Lease, Leases, leasable
from gateway.ledger.limiter import Limiter
from gateway.store.client import connect
from tests.conftest import RedisServer

_dbs = itertools.count(700)


def test_lease_take_credit_and_expiry() -> None:
    lease = Lease([100, 40], expires=10.0, headers=())
    assert lease.take([30, 10], now=1.0) and lease.left == [70, 30]
    assert not lease.take([80, 10], now=1.0) and lease.left == [70, 30]  # one bucket short: nothing taken
    assert lease.credit([(1, -20)], now=1.0) and lease.left == [70, 50]  # tokens returned to the lease
    assert lease.credit([(1, 60)], now=1.0) and lease.left == [70, -10]  # used more than the worst case
    assert not lease.take([1, 1], now=1.0)  # in debt: the next request takes a new lease
    assert not lease.take([1, 0], now=10.0) and not lease.credit([(0, -1)], now=10.0)  # expired


@pytest.mark.parametrize(("increments", "expected"), [
    ([1], True), ([LEASE_US // 4], True), ([LEASE_US // 4 + 1], False), ([10, 500_000], False)])
def test_only_limits_large_next_to_the_request_are_leased(increments: list[int], expected: bool) -> None:
    assert leasable(increments) is expected


def test_leases_are_per_set_of_buckets_and_sized_to_use() -> None:
    a, b = ("tg:{t}:rl:rpm:tenant",), ("tg:{t}:rl:rpm:key:k",)
    leases = Leases()
    assert leases.next_size(a, [10]) == [4 * 10]  # nothing used yet: MIN_REQUESTS requests like this one
    leases.grant(a, [1000], ())
    assert leases.take(a, [10]) is not None and leases.take(b, [10]) is None
    assert leases.next_size(a, [10]) == [40]  # used 10: twice that, but at least 4 requests
    for _ in range(30):
        leases.take(a, [10])
    assert leases.next_size(a, [10]) == [2 * 310] and leases.leftover(a) == [1000 - 310]
    leases.grant(a, [LEASE_US], ())
    assert all(leases.take(a, [10]) for _ in range(LEASE_US // 10))
    assert leases.next_size(a, [10]) == [LEASE_US]  # never more than LEASE_US


def config(url: str, rpm: int, tpm: int | None = None, burst_s: float = 1) -> Any:
    tpm_part = f", tpm: {tpm}" if tpm else ""
    return parse(f"""
model_list:
  - model_name: m
    litellm_params: {{model: openai/gpt-a, api_base: "http://a/v1", api_key: k}}
store: {{url: "{url}"}}
limits:
  burst_s: {burst_s}
  tenants:
    t: {{rpm: {rpm}{tpm_part}}}
""", "leases.yaml", {})


class Counting:
    """The limiter's CHECK calls, counted (the script still runs on the real Redis)."""

    def __init__(self, limiter: Limiter) -> None:
        self.calls = 0
        script = limiter.check_script

        async def counted(**kwargs: Any) -> Any:
            self.calls += 1
            return await script(**kwargs)

        limiter.check_script = counted  # type: ignore[assignment]


async def test_a_large_limit_is_checked_in_the_store_once_per_lease(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}"
    cfg = config(url, rpm=6_000_000, tpm=600_000_000)
    store = connect(url)
    limiter = Limiter(store, lambda: True)
    counting = Counting(limiter)
    tenant = Tenant("t")
    n = 300
    grants = [await limiter.admit(tenant, cfg, lambda: 1000) for _ in range(n)]
    assert all(g is not None and dict(g.headers)[b"x-ratelimit-limit-requests"] == b"6000000" for g in grants)
    for g in grants:  # settled against the lease while it lasts: no store call either
        limiter.settle(g, 100)
    await limiter.drain()
    print(f"\n{n} requests under rpm 6,000,000 / tpm 600,000,000: {counting.calls} CHECK calls")
    assert counting.calls <= n // 4
    await store.aclose()


async def test_small_limits_are_checked_on_every_request(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}"
    cfg = config(url, rpm=120, burst_s=60)  # an interval of 0.5 s: never leased
    store = connect(url)
    limiter = Limiter(store, lambda: True)
    counting = Counting(limiter)
    admitted = 0
    for _ in range(130):
        try:
            await limiter.admit(Tenant("t"), cfg, lambda: 0)
            admitted += 1
        except RateLimited:
            pass
    assert admitted == 120 and counting.calls == 130
    await store.aclose()


async def test_two_replicas_with_leases_stay_within_the_gcra_bound(redis_server: RedisServer) -> None:
    """rpm 6,000 (100/s; a lease holds 5 requests) with burst_s 1: in W seconds the store's GCRA
    admits at most 100 * (1 + W); leases are charged before anything is admitted against them."""
    url = f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}"
    cfg = config(url, rpm=6000)
    stores = [connect(url), connect(url)]
    limiters = [Limiter(s, lambda: True) for s in stores]
    counters = [Counting(lim) for lim in limiters]
    admitted = refused = 0
    started = time.monotonic()
    deadline = started + 1.5

    async def client(limiter: Limiter) -> None:
        nonlocal admitted, refused
        while time.monotonic() < deadline:
            try:
                await limiter.admit(Tenant("t"), cfg, lambda: 0)
                admitted += 1
            except RateLimited:
                refused += 1
                await asyncio.sleep(0.002)

    await asyncio.gather(*(client(limiters[i % 2]) for i in range(8)))
    window = time.monotonic() - started
    bound = 6000 * (1 + window) / 60
    calls = sum(c.calls for c in counters)
    print(f"\n2 replicas, {window:.2f} s: {admitted} admitted (bound {bound:.0f}), {refused} refused, "
          f"{calls} CHECK calls")
    assert refused > 0 and admitted <= bound
    assert admitted >= 0.5 * bound  # leases lost to expiry hold back little
    for s in stores:
        await s.aclose()


class CountingSettle:
    """The limiter's SETTLE calls, counted (the script still runs on the real Redis)."""

    def __init__(self, limiter: Limiter) -> None:
        self.calls: list[list[Any]] = []
        script = limiter.settle_script

        async def counted(**kwargs: Any) -> Any:
            self.calls.append(kwargs["args"])
            return await script(**kwargs)

        limiter.settle_script = counted  # type: ignore[assignment]


async def test_returns_after_a_lease_expired_are_summed_into_one_store_call(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}"
    cfg = config(url, rpm=6_000_000, tpm=600_000_000)
    store = connect(url)
    limiter = Limiter(store, lambda: True)
    settles = CountingSettle(limiter)
    tenant = Tenant("t")

    def returns() -> list[list[Any]]:  # SETTLE calls on the TPM bucket alone (a lease's give-back has both)
        return [c[1:] for c in settles.calls if len(c) == 2]

    grants = [await limiter.admit(tenant, cfg, lambda: 1000) for _ in range(10)]
    lim = grants[0].token_limits[0]  # type: ignore[union-attr]
    back = lim.increment(100) - lim.increment(1000)
    for g in grants:
        assert g is not None and g.lease is not None
        g.lease.expires = 0.0  # expired: the return goes to the store
        limiter.settle(g, 100)
    assert returns() == []  # not yet: summed first
    await asyncio.sleep(LEASE_TTL_S * 4)  # sent without anyone asking
    assert returns() == [[10 * back]]
    # drain() sends what is waiting at once
    g = await limiter.admit(tenant, cfg, lambda: 1000)
    assert g is not None and g.lease is not None
    g.lease.expires = 0.0
    limiter.settle(g, 100)
    await limiter.drain()
    assert returns() == [[10 * back], [back]]
    # an addition (a request that used more than its worst case) is never held back
    g2 = await limiter.admit(tenant, cfg, lambda: 1000)
    assert g2 is not None and g2.lease is not None
    g2.lease.expires = 0.0
    limiter.settle(g2, 5000)
    assert not limiter._returns
    await limiter.drain()
    assert returns()[-1] == [lim.increment(5000) - lim.increment(1000)]
    await store.aclose()
