"""Rate limits in the store: one Lua call admits a request against all its buckets at once.

    admit   before the request is routed upstream: CHECK (one round trip) -> a Grant, or 429
    settle  when the attempt loop ends, on every path: SETTLE returns the unused part of the
            TPM worst case (or adds what the request used beyond it); in the background. Against
            a lease while it lasts (no call); after it expired, returns are summed per set of
            buckets and sent in one call within LEASE_TTL_S (an addition goes at once)

The arithmetic is :mod:`gateway.ledger.limits` (pure); the scripts below are the same
arithmetic against the store's clock (``TIME``), so that replicas share buckets without
sharing clocks. A request under no limit makes no store call at all.

When the store is unreachable, ``store.on_unavailable`` decides, as for the ledger:
``fail_open`` (the default) admits the request unlimited (no headers), ``fail_closed``
answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from gateway.config.identity import Tenant
from gateway.config.load import Config
from gateway.errors import RateLimited, ServiceUnavailable
from gateway.ledger import limits as L
from gateway.ledger.leases import LEASE_TTL_S, Lease, Leases, leasable
from gateway.ledger.writer import UNREACHABLE
from gateway.store.client import Store

log = logging.getLogger("taskgate.limits")

# KEYS: the buckets. ARGV[1]: now in µs ("" = the store's TIME), then increment and depth per bucket.
# Returns {admitted (0/1), wait µs, now, tat of each bucket before, level of each bucket after}.
CHECK = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) * 1000000 + tonumber(t[2]) end
local n = #KEYS
local tats, out, wait = {}, {0, 0, now}, 0
for i = 1, n do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  tats[i] = tat
  local base = math.max(tat, now)
  local level, inc, depth = base - now, tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  if level + inc > depth and level > 0 then
    wait = math.max(wait, level + math.min(inc, depth) - depth)
  end
end
for i = 1, n do out[3 + i] = tats[i] end
if wait > 0 then
  out[2] = wait
  for i = 1, n do out[3 + n + i] = math.max(tats[i], now) - now end
  return out
end
out[1] = 1
for i = 1, n do
  local new = math.max(tats[i], now) + tonumber(ARGV[2 * i])
  redis.call('SET', KEYS[i], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1000)
  out[3 + n + i] = new - now
end
return out
"""

# KEYS: token buckets. ARGV[1]: now ("" = TIME), then the µs to add (> 0) or return (< 0) per bucket.
SETTLE = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) * 1000000 + tonumber(t[2]) end
for i = 1, #KEYS do
  local delta = tonumber(ARGV[1 + i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if delta > 0 then tat = math.max(tat, now) end
  local new = tat + delta
  if new > now then
    redis.call('SET', KEYS[i], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1000)
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Grant:
    """An admitted request's charge: its headers, and what to settle once its tokens are known."""

    headers: tuple[tuple[bytes, bytes], ...]
    token_keys: tuple[str, ...] = ()  # the TPM buckets charged
    token_limits: tuple[L.Limit, ...] = ()
    reserved: int = 0  # tokens charged at admission (the worst case)
    lease: Lease | None = None  # the local lease it was admitted against or took (gateway/ledger/leases.py)
    token_index: tuple[int, ...] = ()  # where the TPM buckets are among the lease's buckets


@dataclass(frozen=True, slots=True)
class _Plan:
    """A caller's buckets and what admitting against them needs, worked out once per config."""

    limits: tuple[L.Limit, ...]
    keys: tuple[str, ...]  # each bucket's key (a lease's key too)
    token_index: tuple[int, ...]  # where the TPM buckets are
    token_limits: tuple[L.Limit, ...]
    token_keys: tuple[str, ...]

    @classmethod
    def of(cls, limits: tuple[L.Limit, ...]) -> "_Plan":
        index = tuple(i for i, lim in enumerate(limits) if lim.dimension == L.TOKENS)
        tpm = tuple(limits[i] for i in index)
        return cls(limits, tuple(lim.key for lim in limits), index, tpm, tuple(lim.key for lim in tpm))


class Limiter:
    def __init__(self, redis: Store, healthy: Callable[[], bool]) -> None:
        self.redis = redis
        self.healthy = healthy  # the ledger's view of the store: when down, no call is tried
        self.check_script = redis.register_script(CHECK)
        self.settle_script = redis.register_script(SETTLE)
        self.leases = Leases()
        self._persons: tuple[Config, dict[str, tuple[int | None, int | None]]] | None = None
        self._plans: dict[Tenant, _Plan] = {}  # for the config's limits section below
        self._plans_of: object = None
        self._settling: set[asyncio.Task[None]] = set()
        # token returns of requests whose lease had expired, summed per set of buckets, sent together
        # LEASE_TTL_S after the first (one store call per set instead of one per request)
        self._returns: dict[tuple[str, ...], list[int]] = {}
        self._returning: asyncio.TimerHandle | None = None

    def limits(self, tenant: Tenant, config: Config) -> tuple[L.Limit, ...]:
        """The buckets of ``tenant``'s requests (worked out once per caller and config)."""
        return self._plan(tenant, config).limits

    def _plan(self, tenant: Tenant, config: Config) -> _Plan:
        if self._plans_of is not config or len(self._plans) > 10_000:
            self._plans, self._plans_of = {}, config
        found = self._plans.get(tenant)
        if found is None:
            person = tenant.person_limits  # a virtual person key's own limits, from the key book
            if tenant.person is not None and person is None:
                if self._persons is None or self._persons[0] is not config:
                    self._persons = (config, L.person_limits(config.keys))
                person = self._persons[1].get(tenant.person)
            found = self._plans[tenant] = _Plan.of(L.limits_for(tenant, config.limits, person))
        return found

    async def admit(self, tenant: Tenant, config: Config, worst_tokens: Callable[[], int]) -> Grant | None:
        """Charges the request against every bucket it is under, or raises 429 with the headers.
        None: no limit applies (no store call was made), or the store is down and we fail open.
        Under a large limit most requests are admitted against a local lease, with no store call."""
        plan = self._plan(tenant, config)
        limits = plan.limits
        if not limits:
            return None
        tokens = worst_tokens() if plan.token_index else 0
        incs = [lim.increment(L.units(lim, tokens)) for lim in limits]
        if not leasable(incs):
            return await self._admit(plan, tokens, incs, None, config)
        keys = plan.keys
        lease = self.leases.take(keys, incs)
        while lease is None and keys in self.leases.pending:  # another request is taking a lease: wait
            await asyncio.shield(self.leases.pending[keys])
            lease = self.leases.take(keys, incs)
        if lease is not None:
            return self._grant(plan, tokens, lease.headers, lease)
        done = self.leases.pending[keys] = asyncio.get_running_loop().create_future()
        try:
            give_back = self.leases.leftover(keys)
            grant = await self._admit(plan, tokens, incs, self.leases.next_size(keys, incs), config)
            if any(give_back):  # the old lease's unused part goes back to the shared buckets
                self._background(keys, [-left for left in give_back])
            return grant
        finally:
            if self.leases.pending.get(keys) is done:
                del self.leases.pending[keys]
            done.set_result(None)

    async def _admit(self, plan: _Plan, tokens: int, incs: list[int], extras: list[int] | None,
                     config: Config) -> Grant | None:
        """One CHECK call for this request, plus a lease of ``extras`` when there is room for it."""
        limits = plan.limits
        lease_incs = [inc + extra for inc, extra in zip(incs, extras)] if extras else incs
        reply = await self._check(limits, lease_incs, config)
        if reply is None:
            return None
        admitted, wait, now, tats, levels = _parse(reply, len(limits))
        if not admitted and extras:  # no room for a lease: would this request alone pass? (pure GCRA)
            extras = None
            verdicts = [L.gcra(tat, now, inc, lim.depth_us) for lim, tat, inc in zip(limits, tats, incs)]
            if all(v[0] for v in verdicts):  # yes: charge it alone (a second call, near the limit only)
                reply = await self._check(limits, incs, config)
                if reply is None:
                    return None
                admitted, wait, now, tats, levels = _parse(reply, len(limits))
            else:
                wait = max(v[2] for v in verdicts)
        if not admitted:
            err = RateLimited(L.refusal(limits, tats, now, incs, tokens), retry_after=L.retry_after_s(wait))
            err.headers = L.headers(limits, levels)
            raise err
        if not extras:
            return self._grant(plan, tokens, L.headers(limits, levels), None)
        headers = L.headers(limits, [max(0, lvl - extra) for lvl, extra in zip(levels, extras)])
        lease = self.leases.grant(plan.keys, extras, headers)
        return self._grant(plan, tokens, headers, lease)

    async def _check(self, limits: tuple[L.Limit, ...], increments: list[int], config: Config) -> Any:
        """The CHECK script's reply, or None when the store is unreachable and we fail open."""
        args: list[Any] = [""]
        for lim, inc in zip(limits, increments):
            args += [inc, lim.depth_us]
        try:
            if not self.healthy():
                raise ConnectionError("the store is unreachable")
            return await self.check_script(keys=[lim.key for lim in limits], args=args)
        except UNREACHABLE as exc:
            if config.store.on_unavailable == "fail_closed":
                raise ServiceUnavailable("the store is unreachable, so rate limits cannot be checked, and the "
                                         "gateway is configured to fail closed (store.on_unavailable)",
                                         code="store_unavailable", retry_after=1) from exc
            log.warning("rate limits not checked: the store is unreachable (%s); failing open", exc)
            return None

    @staticmethod
    def _grant(plan: _Plan, tokens: int, headers: tuple[tuple[bytes, bytes], ...], lease: Lease | None) -> Grant:
        return Grant(headers, plan.token_keys, plan.token_limits, tokens, lease, plan.token_index)

    def settle(self, grant: Grant | None, used_tokens: int) -> None:
        """In the background: the TPM buckets are charged what the request used, not its worst case."""
        if grant is None or not grant.token_keys or used_tokens == grant.reserved:
            return
        deltas = [lim.increment(used_tokens) - lim.increment(grant.reserved) for lim in grant.token_limits]
        if grant.lease is not None:
            if grant.lease.credit(list(zip(grant.token_index, deltas)), time.monotonic()):
                return  # settled against the lease it was charged to: no store call
            if all(delta <= 0 for delta in deltas):
                # a return to the shared buckets: a little later is safe (they hold more debt meanwhile,
                # never less), so it joins the others of the next LEASE_TTL_S in one call
                self._owe(grant.token_keys, deltas)
                return
        self._background(grant.token_keys, deltas)

    def _owe(self, keys: tuple[str, ...], deltas: list[int]) -> None:
        owed = self._returns.get(keys)
        if owed is None:
            self._returns[keys] = deltas
        else:
            for i, delta in enumerate(deltas):
                owed[i] += delta
        if self._returning is None:
            self._returning = asyncio.get_running_loop().call_later(LEASE_TTL_S, self._send_returns)

    def _send_returns(self) -> None:
        self._returning = None
        returns, self._returns = self._returns, {}
        for keys, deltas in returns.items():
            if any(deltas):
                self._background(keys, deltas)

    def _background(self, keys: tuple[str, ...], deltas: list[int]) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(keys, deltas))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, keys: tuple[str, ...], deltas: list[int]) -> None:
        try:
            await self.settle_script(keys=list(keys), args=["", *deltas])
        except UNREACHABLE as exc:  # the worst case stays charged: the bucket drains on its own
            log.warning("rate limit settlement skipped: the store is unreachable (%s)", exc)
        except Exception:
            log.exception("rate limit settlement failed")

    async def drain(self) -> None:
        """Sends the returns waiting to be summed, then waits for settlements in flight (tests; shutdown)."""
        if self._returning is not None:
            self._returning.cancel()
            self._send_returns()
        if self._settling:
            await asyncio.wait(list(self._settling), timeout=2)


def _parse(raw: Any, n: int) -> tuple[bool, int, int, list[int], list[int]]:
    """CHECK's reply: admitted, wait µs, now, each bucket's tat before and level after."""
    return (bool(int(raw[0])), int(raw[1]), int(raw[2]), [int(x) for x in raw[3:3 + n]],
            [int(x) for x in raw[3 + n:3 + 2 * n]])
