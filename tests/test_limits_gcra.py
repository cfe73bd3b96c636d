"""Rate limits, the pure part: GCRA's arithmetic, the bound it keeps, which buckets a request is
under, and the headers a client is told. Then the Lua script against a real Redis, step by step
beside the pure arithmetic (the script is the same algorithm, or this fails)."""

from __future__ import annotations

import itertools
import random

import pytest
import redis.asyncio as aioredis

from gateway.config.identity import Tenant
from gateway.config.schema import LimitsSection, RateLimit
from gateway.ledger import limits as L
from gateway.ledger.limiter import CHECK, SETTLE
from tests.conftest import RedisServer

S = 1_000_000  # µs

# (name, tat, now, increment, depth) -> (admitted, new tat, wait)
GCRA = [
    ("an empty bucket admits", 0, 1000, 100, 500, (True, 1100, 0)),
    ("a tat in the past counts from now", 500, 1000, 100, 500, (True, 1100, 0)),
    ("fits exactly at the depth", 1300, 1000, 200, 500, (True, 1500, 0)),
    ("one over the depth waits the overshoot", 1400, 1000, 200, 500, (False, 1400, 100)),
    ("a full bucket waits until the request fits", 1500, 1000, 100, 500, (False, 1500, 100)),
    ("larger than the bucket: admitted when full, into debt", 0, 1000, 800, 500, (True, 1800, 0)),
    ("larger than the bucket, not full: waits until full", 1001, 1000, 800, 500, (False, 1001, 1)),
    ("larger than the bucket, in debt: waits out the debt", 1700, 1000, 800, 500, (False, 1700, 700)),
]


@pytest.mark.parametrize(("name", "tat", "now", "inc", "depth", "expected"), GCRA, ids=[c[0] for c in GCRA])
def test_gcra_table(name: str, tat: int, now: int, inc: int, depth: int, expected: tuple[bool, int, int]) -> None:
    assert L.gcra(tat, now, inc, depth) == expected


def test_check_is_all_or_nothing() -> None:
    # two buckets: the second refuses, so neither is charged and the wait is the second's
    verdict, tats = L.check([0, 1500], 1000, [100, 100], [500, 500])
    assert not verdict.admitted and verdict.wait_us == 100 and tats == [0, 1500]
    assert verdict.levels == (0, 500)
    verdict, tats = L.check([0, 1300], 1000, [100, 100], [500, 500])
    assert verdict.admitted and tats == [1100, 1400] and verdict.levels == (100, 400)


# (name, tat, now, delta) -> the new tat, or None (full: the key goes)
SETTLE_CASES = [
    ("unused tokens are returned", 5000, 1000, -1000, 4000),
    ("returning more than the debt leaves it full", 1500, 1000, -1000, None),
    ("more than reserved is added as debt", 5000, 1000, 700, 5700),
    ("added to a full bucket counts from now", 200, 1000, 700, 1700),
]


@pytest.mark.parametrize(("name", "tat", "now", "delta", "expected"), SETTLE_CASES, ids=[c[0] for c in SETTLE_CASES])
def test_settle_table(name: str, tat: int, now: int, delta: int, expected: int | None) -> None:
    assert L.settle(tat, now, delta) == expected


@pytest.mark.parametrize(("rpm", "burst_s", "window_s", "gap_ms"), [
    (60, 1, 10, 10), (120, 2, 4, 7), (120, 60, 30, 3), (7, 5, 60, 50), (6000, 0.5, 3, 1),
])
def test_admitted_in_any_window_stays_within_the_bound(rpm: int, burst_s: float, window_s: float, gap_ms: int) -> None:
    """The documented bound: at most per_minute * (burst_s + W) / 60 in any window of W seconds."""
    lim = L.limit("k", L.REQUESTS, rpm, burst_s, "x")
    rng = random.Random(rpm)
    tat, now, admitted = 0, 10 * S, []
    end = now + int(3 * window_s * S)
    while now < end:
        ok, tat, _ = L.gcra(tat, now, lim.increment(1), lim.depth_us)
        if ok:
            admitted.append(now)
        now += rng.randint(1, 2 * gap_ms) * 1000
    bound = (lim.depth_us + window_s * S) / lim.interval_us
    j = 0
    most = 0
    for i, start in enumerate(admitted):  # every window that starts at an admission (the worst ones)
        while j < len(admitted) and admitted[j] <= start + window_s * S:
            j += 1
        most = max(most, j - i)
    assert most <= bound, (most, bound)
    assert most >= bound - 2, "the load was heavy enough to reach the limit"


# (name, duration µs, OpenAI's format)
DURATIONS = [("zero", 0, "0s"), ("20 ms", 20_000, "20ms"), ("rounds up to a ms", 1, "1ms"), ("1 s", S, "1s"),
             ("1.5 s", 1_500_000, "1.5s"), ("59.999 s", 59_999_000, "59.999s"), ("6 m", 360 * S, "6m0s"),
             ("1m30.5s", 90_500_000, "1m30.5s"), ("hours", 3723 * S, "1h2m3s")]


@pytest.mark.parametrize(("name", "us", "text"), DURATIONS, ids=[c[0] for c in DURATIONS])
def test_duration_format(name: str, us: int, text: str) -> None:
    assert L.duration(us) == text


@pytest.mark.parametrize(("wait_us", "seconds"), [(0, 1), (1, 1), (S, 1), (S + 1, 2), (59 * S, 59)])
def test_retry_after_is_whole_seconds_at_least_one(wait_us: int, seconds: int) -> None:
    assert L.retry_after_s(wait_us) == seconds


SECTION = LimitsSection(burst_s=10, default=RateLimit(rpm=100), tenants={"acme": RateLimit(rpm=5, tpm=1000)})
# (name, tenant, section, person's limits) -> [(key, dimension, per minute)]
PLANS = [
    ("no limit anywhere: nothing to check", Tenant("t"), LimitsSection(), None, []),
    ("anonymous, no limits", Tenant("default", admin=True), LimitsSection(), None, []),
    ("the default applies per tenant", Tenant("t"), SECTION, None, [("tg:{t}:rl:rpm:tenant", "requests", 100)]),
    ("a named tenant replaces the default", Tenant("acme"), SECTION, None,
     [("tg:{acme}:rl:rpm:tenant", "requests", 5), ("tg:{acme}:rl:tpm:tenant", "tokens", 1000)]),
    ("a key's own limits, then its tenant's", Tenant("t", key_id="k1", rpm=3, tpm=50), SECTION, None,
     [("tg:{t}:rl:rpm:key:k1", "requests", 3), ("tg:{t}:rl:tpm:key:k1", "tokens", 50),
      ("tg:{t}:rl:rpm:tenant", "requests", 100)]),
    ("a key with no limit and no tenant limit", Tenant("t", key_id="k1"), LimitsSection(), None, []),
    ("an agent counts against its person's key", Tenant("t", key_id="a1", person="p1", agent="bot", rpm=2),
     LimitsSection(), (10, 500),
     [("tg:{t}:rl:rpm:key:a1", "requests", 2), ("tg:{t}:rl:rpm:key:p1", "requests", 10),
      ("tg:{t}:rl:tpm:key:p1", "tokens", 500)]),
    ("an agent whose person has no limit", Tenant("t", key_id="a1", person="p1", agent="bot"), LimitsSection(),
     None, []),
]


@pytest.mark.parametrize(("name", "tenant", "section", "person", "expected"), PLANS, ids=[c[0] for c in PLANS])
def test_which_limits_apply(name: str, tenant: Tenant, section: LimitsSection,
                            person: tuple[int | None, int | None] | None, expected: list[tuple[str, str, int]]) -> None:
    got = L.limits_for(tenant, section, person)
    assert [(lim.key, lim.dimension, lim.per_minute) for lim in got] == expected
    assert all(lim.key.startswith("tg:{" + tenant.name + "}:") for lim in got), "one hash slot per request"


def test_headers_name_the_tightest_bucket_per_dimension() -> None:
    key = L.limit("a", L.REQUESTS, 60, 60, "key")  # 60 left when full
    tenant = L.limit("b", L.REQUESTS, 600, 60, "tenant")
    tokens = L.limit("c", L.TOKENS, 6000, 60, "tenant")
    # key: 10 s of debt -> 50 left; tenant: 59 s of debt -> 10 left (tightest); tokens: 1 s -> 5900
    got = dict(L.headers([key, tenant, tokens], [10 * S, 59 * S, S]))
    assert got == {b"x-ratelimit-limit-requests": b"600", b"x-ratelimit-remaining-requests": b"10",
                   b"x-ratelimit-reset-requests": b"59s", b"x-ratelimit-limit-tokens": b"6000",
                   b"x-ratelimit-remaining-tokens": b"5900", b"x-ratelimit-reset-tokens": b"1s"}
    assert L.headers([tokens], [0]) == ((b"x-ratelimit-limit-tokens", b"6000"),
                                        (b"x-ratelimit-remaining-tokens", b"6000"),
                                        (b"x-ratelimit-reset-tokens", b"0s"))


# --- the Lua scripts, beside the pure arithmetic -------------------------------------------------

_dbs = itertools.count(600)


async def test_lua_check_and_settle_match_the_pure_arithmetic(redis_server: RedisServer) -> None:
    r = aioredis.Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}")
    check, settle = r.register_script(CHECK), r.register_script(SETTLE)
    await r.flushdb()
    limits = [L.limit("tg:{t}:rl:rpm:tenant", L.REQUESTS, 120, 2, "t"),
              L.limit("tg:{t}:rl:tpm:tenant", L.TOKENS, 6000, 2, "t"),
              L.limit("tg:{t}:rl:tpm:key:k", L.TOKENS, 900, 3, "k")]
    rng = random.Random(7)
    tats = [0, 0, 0]
    now = 1_700_000_000 * S
    outcomes = set()
    for _ in range(400):
        now += rng.randint(0, 400) * 1000
        tokens = rng.choice([1, 10, 50, 200, 2000])
        incs = [lim.increment(L.units(lim, tokens)) for lim in limits]
        args: list[int | str] = [str(now)]
        for lim, inc in zip(limits, incs):
            args += [inc, lim.depth_us]
        reply = await check(keys=[lim.key for lim in limits], args=args)
        verdict, new = L.check(tats, now, incs, [lim.depth_us for lim in limits])
        assert [int(x) for x in reply] == [int(verdict.admitted), verdict.wait_us, now, *tats, *verdict.levels]
        tats = new
        outcomes.add(verdict.admitted)
        if verdict.admitted and rng.random() < 0.5:  # settle with what it "used"
            used = rng.randint(0, tokens * 2)
            deltas = [lim.increment(used) - lim.increment(tokens) for lim in limits[1:]]
            await settle(keys=[lim.key for lim in limits[1:]], args=[str(now), *deltas])
            for i, d in enumerate(deltas, start=1):
                tats[i] = L.settle(tats[i], now, d) or 0
        stored = [int(v) if v is not None else 0 for v in await r.mget([lim.key for lim in limits])]
        assert [max(t, now) for t in stored] == [max(t, now) for t in tats]
    assert outcomes == {True, False}, "the sequence both admitted and refused"
    await r.aclose()
