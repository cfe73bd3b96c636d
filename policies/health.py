"""Deployment health: a circuit breaker, retry rules and backoff (pure; ``now`` is passed in).

The breaker, per deployment::

    closed --(N consecutive failures, or one 429)--> open
    open --(cooldown over: retry-after of the 429, else breaker.cooldown_s)--> half_open
    half_open: up to K probe attempts may start (breaker.half_open_probes)
    half_open --success--> closed          half_open --failure--> open

Only failures that say something about the deployment count (see
:data:`RETRY_RULES`); a bad request from the client does not. The state is a
small flat dict (:meth:`BreakerState.to_dict`) so that replicas can share it in
a Redis hash; every transition is a function of the old state and ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from policies.compliance import Filtered
from policies.schema import BreakerSettings
from policies.verdicts import excluded
from providers.base import Deployment, FailureReason

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class BreakerState:
    phase: str = CLOSED
    failures: int = 0  # consecutive counted failures while closed
    open_until: float = 0.0  # epoch seconds; meaningful while open
    probes: int = 0  # probe attempts started while half-open
    reason: str = ""  # the failure reason that opened it

    def to_dict(self) -> dict[str, str | float]:
        return {"phase": self.phase, "failures": float(self.failures), "open_until": self.open_until,
                "probes": float(self.probes), "reason": self.reason}

    @classmethod
    def from_dict(cls, raw: Mapping[str | bytes, str | bytes | float | int] | None) -> "BreakerState":
        """Tolerates bytes (a Redis hash) and garbage: anything unreadable is a closed breaker."""
        if not raw:
            return cls()
        text = {_s(k): _s(v) for k, v in raw.items()}
        try:
            phase = text.get("phase", CLOSED)
            if phase not in (CLOSED, OPEN, HALF_OPEN):
                return cls()
            return cls(phase, int(float(text.get("failures", 0))), float(text.get("open_until", 0)),
                       int(float(text.get("probes", 0))), text.get("reason", ""))
        except ValueError:
            return cls()


def _s(value: str | bytes | float | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def current(state: BreakerState, now: float) -> BreakerState:
    """The state as of ``now``: an open breaker whose cooldown is over is half-open."""
    if state.phase == OPEN and now >= state.open_until:
        return BreakerState(HALF_OPEN, state.failures, state.open_until, 0, state.reason)
    return state


@dataclass(frozen=True, slots=True)
class Availability:
    usable: bool
    phase: str
    reason: str
    retry_after: float | None = None  # seconds until it may be usable again


def availability(state: BreakerState, now: float, cfg: BreakerSettings) -> Availability:
    state = current(state, now)
    if state.phase == CLOSED:
        return Availability(True, CLOSED, "healthy")
    if state.phase == HALF_OPEN:
        if state.probes < cfg.half_open_probes:
            return Availability(True, HALF_OPEN, f"half-open: probe {state.probes + 1} of {cfg.half_open_probes}")
        return Availability(False, HALF_OPEN, f"recovering: {_cause(state)}, and its {cfg.half_open_probes} "
                            f"probe(s) are in flight", cfg.cooldown_s)
    wait = max(0.0, state.open_until - now)
    return Availability(False, OPEN, f"circuit open: {_cause(state)}; retry in {wait:.1f}s", wait)


def _cause(state: BreakerState) -> str:
    """Why a breaker opened, in plain words."""
    if state.reason == FailureReason.RATE_LIMITED.value:
        return "rate-limited by its provider"
    what = state.reason.replace("_", " ") if state.reason else "failure"
    return f"failing ({state.failures} {what} failure(s) in a row)" if state.failures > 1 else f"failing ({what})"


def rate_limited(state: BreakerState) -> bool:
    return state.phase != CLOSED and state.reason == FailureReason.RATE_LIMITED.value


def clamp(state: BreakerState, now: float, cfg: BreakerSettings) -> BreakerState:
    """An open breaker never stays open beyond the longest wait the settings allow from ``now``
    (a state shared by an older replica, or written before the cap, may say "until the year 33,700")."""
    longest = max(cfg.max_retry_after_s, cfg.cooldown_s)
    if state.phase == OPEN and state.open_until > now + longest:
        return replace(state, open_until=now + longest)
    return state


def begin_attempt(state: BreakerState, now: float) -> BreakerState:
    """Call when an attempt starts: a half-open breaker counts it as a probe."""
    state = current(state, now)
    return replace(state, probes=state.probes + 1) if state.phase == HALF_OPEN else state


def record_success(state: BreakerState, now: float) -> BreakerState:
    return BreakerState()


def record_failure(state: BreakerState, now: float, cfg: BreakerSettings, reason: FailureReason | str,
                   retry_after: float | None = None) -> BreakerState:
    """A 429 opens at once (for its retry-after, else the cooldown); a failed probe reopens;
    otherwise the breaker opens at ``cfg.failures`` consecutive counted failures."""
    rule = retryable(reason)
    if not rule.trips_breaker:
        return state
    state = current(state, now)
    label = FailureReason(reason).value
    if label == FailureReason.RATE_LIMITED.value:
        cooldown = (min(retry_after, cfg.max_retry_after_s) if retry_after is not None and retry_after > 0
                    else cfg.cooldown_s)
        return BreakerState(OPEN, state.failures + 1, now + cooldown, 0, label)
    failures = state.failures + 1
    if state.phase == HALF_OPEN or failures >= cfg.failures:
        return BreakerState(OPEN, failures, now + cfg.cooldown_s, 0, label)
    return BreakerState(CLOSED, failures, 0.0, 0, label)


# --- retries ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryRule:
    retry_same: bool  # worth another attempt on the same deployment
    try_next: bool  # worth falling back to the next deployment
    trips_breaker: bool  # counts as a failure of the deployment


RETRY_RULES: Mapping[FailureReason, RetryRule] = {
    FailureReason.BAD_REQUEST: RetryRule(False, False, False),  # the client's request; same everywhere
    FailureReason.CONTENT_FILTER: RetryRule(False, False, False),  # the content; do not shop around
    FailureReason.AUTH: RetryRule(False, True, True),  # this deployment's credentials
    FailureReason.NOT_FOUND: RetryRule(False, True, True),  # this deployment's model name
    FailureReason.RATE_LIMITED: RetryRule(False, True, True),  # wait for retry-after; use another now
    FailureReason.TIMEOUT: RetryRule(True, True, True),
    FailureReason.SERVER_ERROR: RetryRule(True, True, True),
    FailureReason.UNAVAILABLE: RetryRule(True, True, True),
    FailureReason.PROTOCOL: RetryRule(True, True, True),
}
_NEVER = RetryRule(False, False, False)


def retryable(reason: FailureReason | str) -> RetryRule:
    """What to do after a failure; an unknown reason is neither retried nor counted."""
    try:
        return RETRY_RULES.get(FailureReason(reason), _NEVER)
    except ValueError:
        return _NEVER


def backoff(attempt: int, base: float, cap: float, rand: float) -> float:
    """Full jitter: a uniform delay in [0, min(cap, base * 2**attempt)); ``rand`` in [0, 1)."""
    return rand * min(cap, base * 2.0 ** min(attempt, 62))


# --- filtering ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Healthy(Filtered):
    retry_after: float | None = None  # the soonest an excluded deployment may be usable


def filter_healthy(deployments: Iterable[Deployment], states: Mapping[str, BreakerState], now: float,
                   cfg: BreakerSettings) -> Healthy:
    """Keep closed and half-open (with a probe left) deployments; a missing state is closed."""
    allowed, out, waits = [], [], []
    for dep in deployments:
        state = states.get(dep.id)
        if state is None or state.phase == CLOSED:  # what availability() says of it, without building it
            allowed.append(dep)
            continue
        avail = availability(state, now, cfg)
        if avail.usable:
            allowed.append(dep)
        else:
            out.append(excluded(dep.id, "routing.breaker", avail.reason))
            if avail.retry_after is not None:
                waits.append(avail.retry_after)
    return Healthy(tuple(allowed), tuple(out), min(waits) if waits else None)


# --- when nothing is usable: rate limits, and panic --------------------------------------


@dataclass(frozen=True, slots=True)
class Unusable:
    """What to do when none of a model's deployments is usable (see :func:`when_none_usable`)."""

    all_rate_limited: bool  # every one waits on its provider's Retry-After: answer 429
    probes: tuple[Deployment, ...]  # panic: deployments ejected for failures, to try anyway as probes
    retry_after: float | None  # the soonest one may be usable again


def when_none_usable(deployments: Iterable[Deployment], states: Mapping[str, BreakerState], now: float,
                     cfg: BreakerSettings) -> Unusable:
    """Called when every one of ``deployments`` is excluded by its breaker.

    * All of them rate-limited by their providers: a 429 with the shortest wait (their
      Retry-After is the providers' word; it is never probed early).
    * Envoy's panic threshold: when at least ``cfg.panic_threshold`` of them (by count) are
      ejected for failures, the ones whose breaker is open for failures are let through as
      probes (half-open) rather than refusing every request for the whole cooldown.
      ``panic_threshold: 0`` turns this off. Only ``deployments`` are ever probed: the caller
      passes what compliance and capabilities allowed.
    """
    deps = list(deployments)
    cur = [(d, current(states.get(d.id, BreakerState()), now)) for d in deps]
    waits = [w for _, st in cur if (w := availability(st, now, cfg).retry_after) is not None]
    soonest = min(waits) if waits else None
    limited = [d for d, st in cur if rate_limited(st)]
    if deps and len(limited) == len(deps):
        return Unusable(True, (), soonest)
    failing = [d for d, st in cur if st.phase != CLOSED and not rate_limited(st)]
    open_for_failures = tuple(d for d, st in cur if st.phase == OPEN and not rate_limited(st))
    panic = (cfg.panic_threshold > 0 and bool(deps) and bool(open_for_failures)
             and len(failing) / len(deps) >= cfg.panic_threshold)
    return Unusable(False, open_for_failures if panic else (), soonest)


def panic_probe(state: BreakerState, now: float) -> BreakerState:
    """An open breaker let through early under panic: half-open, with its probes to start."""
    state = current(state, now)
    if state.phase != OPEN:
        return state
    return BreakerState(HALF_OPEN, state.failures, now, 0, state.reason)
