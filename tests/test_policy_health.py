"""The circuit breaker's transitions, its serialised form, retry rules and backoff."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.health import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerState,
    availability,
    backoff,
    begin_attempt,
    current,
    filter_healthy,
    record_failure,
    record_success,
    retryable,
)
from policies.schema import BreakerSettings
from providers.base import Deployment, FailureReason

CFG = BreakerSettings(failures=3, cooldown_s=30, half_open_probes=2)
T0 = 1_000_000.0


def fail(state: BreakerState, now: float = T0, reason: str = "server_error", retry_after: float | None = None):  # noqa: ANN201
    return record_failure(state, now, CFG, reason, retry_after)


@pytest.mark.parametrize("steps, phase, usable", [
    # (event, seconds after T0); events: f=failure, s=success, r=429, b=begin attempt, c=client error
    ([], CLOSED, True),
    ([("f", 0), ("f", 1)], CLOSED, True),
    ([("f", 0), ("f", 1), ("f", 2)], OPEN, False),  # N consecutive failures
    ([("f", 0), ("f", 1), ("s", 2), ("f", 3), ("f", 4)], CLOSED, True),  # a success resets the count
    ([("c", 0), ("c", 0), ("c", 0), ("c", 0)], CLOSED, True),  # client errors never count
    ([("r", 0)], OPEN, False),  # a 429 opens at once
])
def test_transitions_while_closed(steps: list[tuple[str, float]], phase: str, usable: bool) -> None:
    state = BreakerState()
    for event, at in steps:
        state = {"f": lambda s: fail(s, T0 + at), "s": lambda s: record_success(s, T0 + at),
                 "r": lambda s: fail(s, T0 + at, "rate_limited"),
                 "c": lambda s: fail(s, T0 + at, "bad_request")}[event](state)
    assert current(state, T0 + 5).phase == phase
    assert availability(state, T0 + 5, CFG).usable is usable


def opened() -> BreakerState:
    return fail(fail(fail(BreakerState())))


@pytest.mark.parametrize("after, phase, usable", [
    (0, OPEN, False), (29.9, OPEN, False), (30, HALF_OPEN, True), (3600, HALF_OPEN, True),
])
def test_open_becomes_half_open_after_the_cooldown(after: float, phase: str, usable: bool) -> None:
    avail = availability(opened(), T0 + after, CFG)
    assert (avail.phase, avail.usable) == (phase, usable)
    if not usable:
        assert avail.retry_after == pytest.approx(30 - after)


@pytest.mark.parametrize("retry_after, open_for", [(None, 30), (5.0, 5.0), (120.0, 120.0), (0.0, 30)])
def test_a_429_opens_for_its_retry_after(retry_after: float | None, open_for: float) -> None:
    state = fail(BreakerState(), reason="rate_limited", retry_after=retry_after)
    assert availability(state, T0 + open_for - 0.01, CFG).usable is False
    assert availability(state, T0 + open_for, CFG).phase == HALF_OPEN


def test_half_open_allows_k_probes_then_waits() -> None:
    now = T0 + 31
    state = opened()
    state = begin_attempt(state, now)
    assert (state.phase, state.probes, availability(state, now, CFG).usable) == (HALF_OPEN, 1, True)
    state = begin_attempt(state, now)
    assert (state.probes, availability(state, now, CFG).usable) == (2, False)


@pytest.mark.parametrize("outcome, phase", [("success", CLOSED), ("failure", OPEN), ("429", OPEN)])
def test_a_probe_closes_or_reopens(outcome: str, phase: str) -> None:
    now = T0 + 31
    state = begin_attempt(opened(), now)
    state = {"success": lambda: record_success(state, now), "failure": lambda: fail(state, now),
             "429": lambda: fail(state, now, "rate_limited")}[outcome]()
    assert current(state, now).phase == phase
    if phase == OPEN:
        assert state.open_until == now + 30  # a fresh cooldown
    else:
        assert state == BreakerState()


def test_begin_attempt_does_not_count_while_closed() -> None:
    assert begin_attempt(BreakerState(), T0) == BreakerState()


@pytest.mark.parametrize("state", [
    BreakerState(), opened(), begin_attempt(opened(), T0 + 40), fail(BreakerState(), reason="rate_limited"),
])
def test_round_trips_through_a_flat_dict(state: BreakerState) -> None:
    raw = state.to_dict()
    assert all(isinstance(k, str) and isinstance(v, (str, float)) for k, v in raw.items())
    assert BreakerState.from_dict(raw) == state
    as_redis = {k.encode(): str(v).encode() for k, v in raw.items()}  # what a Redis hash gives back
    assert BreakerState.from_dict(as_redis) == state


@pytest.mark.parametrize("raw", [None, {}, {"phase": "melted"}, {"phase": "open", "open_until": "soon"}])
def test_unreadable_state_is_a_closed_breaker(raw: dict | None) -> None:
    assert BreakerState.from_dict(raw) == BreakerState()


@pytest.mark.parametrize("reason, same, next_, trips", [
    (FailureReason.BAD_REQUEST, False, False, False),
    (FailureReason.CONTENT_FILTER, False, False, False),
    (FailureReason.AUTH, False, True, True),
    (FailureReason.NOT_FOUND, False, True, True),
    (FailureReason.RATE_LIMITED, False, True, True),
    (FailureReason.TIMEOUT, True, True, True),
    ("server_error", True, True, True),
    ("unavailable", True, True, True),
    ("protocol", True, True, True),
    ("something new", False, False, False),
])
def test_retryable(reason: str, same: bool, next_: bool, trips: bool) -> None:
    rule = retryable(reason)
    assert (rule.retry_same, rule.try_next, rule.trips_breaker) == (same, next_, trips)


@pytest.mark.parametrize("attempt, rand, expected", [
    (0, 0.5, 0.05), (1, 0.5, 0.1), (3, 1.0, 0.8), (5, 1.0, 2.0), (100, 0.5, 1.0), (2, 0.0, 0.0),
])
def test_backoff_full_jitter(attempt: int, rand: float, expected: float) -> None:
    assert backoff(attempt, 0.1, 2.0, rand) == pytest.approx(expected)


def test_filter_healthy_reports_the_soonest_retry() -> None:
    deps = [Deployment(i, "m", "openai", i) for i in "abc"]
    states = {"a": opened(), "b": fail(BreakerState(), T0 + 10, "rate_limited", 5.0)}
    result = filter_healthy(deps, states, T0 + 12, CFG)
    assert [d.id for d in result.allowed] == ["c"]
    assert [(c.deployment_id, c.rule) for c in result.excluded] == [("a", "routing.breaker"), ("b", "routing.breaker")]
    assert result.retry_after == pytest.approx(3.0)


EVENTS = st.lists(st.tuples(st.sampled_from(["fail", "ok", "429", "begin", "bad"]), st.floats(0, 50)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_breaker_invariants(events: list[tuple[str, float]]) -> None:
    state, now = BreakerState(), T0
    for event, dt in events:
        now += dt
        before = current(state, now)
        state = {"fail": lambda: fail(state, now), "ok": lambda: record_success(state, now),
                 "429": lambda: fail(state, now, "rate_limited"), "begin": lambda: begin_attempt(state, now),
                 "bad": lambda: fail(state, now, "bad_request")}[event]()
        assert state.phase in (CLOSED, OPEN, HALF_OPEN)
        if event == "ok":
            assert state == BreakerState()
        if event == "429" or (event == "fail" and before.phase == HALF_OPEN):
            assert state.phase == OPEN and state.open_until > now - 1e-9
        if state.phase == CLOSED:
            assert state.failures < CFG.failures
        assert BreakerState.from_dict(state.to_dict()) == state
