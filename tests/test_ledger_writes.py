"""Writing less per request (issue 16), against a real Redis: an intent whose final record is in
the same batch is not sent (and stands if that final record is refused); a replayed intent is
removed by its replayed final record; a one-request task is written by a short path that leaves
the same task, aggregates, spend and export record as the general one; compact script replies."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import orjson
import pytest

from gateway.config.load import parse
from gateway.ledger.keys import for_tenant
from gateway.ledger.ledger import Ledger
from gateway.ledger.writer import FINAL, INTENT, Op, _supersede, unpack_reply
from gateway.snapshot import build_snapshot
from providers.base import Usage
from tests.test_ledger import rec, running_ledger

CONFIG = """
store: {{url: "{url}", spool_dir: "{spool}"}}
tasks: {{idle_timeout_s: 60, sweep_interval_s: 3600, intent_lease_s: 5}}
budgets:
  tenants:
    acme: {{daily_usd: 10}}
"""


@pytest.fixture
async def ledger(redis_server: Any, tmp_path: Path) -> AsyncIterator[Ledger]:
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    config = parse(CONFIG.format(url=url, spool=tmp_path / "spool"), "test.yaml", {})
    async with running_ledger(url, config) as led:
        yield led


def _decoded(h: Any) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in h.items()}


# --- intents superseded in a batch ---------------------------------------------------------


def test_an_intent_with_its_final_record_in_the_batch_is_not_sent() -> None:
    batch = [Op("record", "i1", "k", INTENT, "r1"), Op("record", "i2", "k", INTENT, "r2"),
             Op("record", "x", "k"), Op("record", "f1", "k", FINAL, "r1")]
    send, superseded = _supersede(batch)
    assert [op.arg for op in send] == ["i2", "x", "f1"], "r2 is still in flight: its intent goes"
    assert list(superseded) == ["r1"]
    assert _supersede(batch[:3]) == (batch[:3], {})


async def test_a_refused_final_record_leaves_its_superseded_intent_standing(ledger: Ledger) -> None:
    request = uuid.uuid4().hex
    keys = for_tenant("acme")
    ledger.intent(rec("refused", request=request, attempt=999, outcome="interrupted", final=True))
    good = orjson.loads(ledger.record(rec("other", cost=5)))
    bad = {**good, "task_id": "refused", "request_id": request, "input_tokens": -5}
    bad_keys = {"task": keys.task("refused"), "seenp": keys.seen_prefix, "settledp": keys.settled_prefix,
                "dedup_ttl": 60}
    # the refused final record, in the same batch as its intent
    ledger.writer.submit(Op("record", orjson.dumps(bad_keys).decode() + "\x1e" + orjson.dumps(bad).decode(),
                            keys.tasks, FINAL, request))
    await ledger.flush()
    assert ledger.dead.count == 1
    assert await ledger.redis.hexists(keys.intents, request), "the intent stands: settled if nothing else comes"
    assert await ledger.redis.zscore(keys.deadlines, request) is not None
    ledger._in_flight.clear()
    await ledger.sweep_once(now=time.time() + 3600)
    assert ledger.metrics.interrupted._value.get() == 1


async def test_a_replayed_intent_is_removed_by_its_replayed_final_record(ledger: Ledger) -> None:
    """A process killed after its batch reached Redis but before the journal's acknowledgement:
    the next process replays both ops. The intent must not outlive its (duplicate) final record,
    else it would be settled as interrupted on top of the real cost."""
    request = uuid.uuid4().hex
    keys = for_tenant("acme")
    interrupted = rec("replayed", request=request, attempt=999, outcome="interrupted", final=True, cost=400)
    final = rec("replayed", request=request, attempt=0, cost=10, final=True)
    ledger.intent(interrupted)
    await ledger.flush()
    ledger.record(final)
    await ledger.flush()
    arg, _ = ledger._line(final, keys)
    header = orjson.dumps({"intent": True, "intents": keys.intents, "deadlines": keys.deadlines,
                           "request_id": request, "due": time.time() + 5}).decode()
    intent_arg = header + "\x1d" + ledger._line(interrupted, keys)[0]
    for op in (Op("record", intent_arg, keys.tasks), Op("record", arg, keys.tasks)):  # as the spool replays
        ledger.writer.submit(op)
    await ledger.flush()
    assert not await ledger.redis.hexists(keys.intents, request)
    assert await ledger.redis.zscore(keys.deadlines, request) is None
    ledger._in_flight.clear()
    await ledger.sweep_once(now=time.time() + 3600)
    assert ledger.metrics.interrupted._value.get() == 0
    assert (await ledger.get("acme", "replayed"))["cost_picousd"] == 10


# --- one-request tasks ----------------------------------------------------------------------

VARIANTS: list[dict[str, Any]] = [
    {},
    {"cost": None},
    {"cost": 0},
    {"usage": None, "cost": None, "usage_source": "none"},
    {"outcome": "error", "status": 500, "end_outcome": "failed", "waste_reason": "failed", "cost": 70},
    {"outcome": "cancelled", "end_outcome": "failed", "waste_reason": "cancelled", "usage_source": "estimated",
     "usage": Usage(7, 3, 2, 1)},
    {"key_id": "k1", "actor": "agent", "agent": "bot", "person": "p1", "key_spend": ("k1", "p1")},
    {"key_id": "k2", "budget_picousd": 5000},
]
ONLY_WHEN_ENDING = {"pmodel", "rt_key", "rt_win", "rt_last", "rt_ok"}  # read by end_task, nowhere else


async def _state(ledger: Ledger, day: str, period: tuple[str, str]) -> dict[str, dict[str, str]]:
    keys = for_tenant("acme")
    names = {"agg": keys.agg(day), "aggw": keys.agg_who(day), "spend": keys.spend(period)[0],
             "month": keys.spend(period)[1], "k1": keys.key_spend("k1"), "p1": keys.key_spend("p1")}
    return {name: _decoded(await ledger.redis.hgetall(key)) for name, key in names.items()}


def _delta(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> dict[str, dict[str, int]]:
    return {name: {f: int(v) - int(before[name].get(f, 0)) for f, v in h.items()
                   if int(v) != int(before[name].get(f, 0))} for name, h in after.items()}


@pytest.mark.parametrize("variant", VARIANTS, ids=[",".join(v) or "plain" for v in VARIANTS])
async def test_a_one_request_task_writes_what_the_general_path_writes(ledger: Ledger,
                                                                      variant: dict[str, Any]) -> None:
    keys = for_tenant("acme")
    day, period = time.strftime("%Y%m%d", time.gmtime()), ("20261203", "202612")
    fields = {"end_outcome": "succeeded", "final": True, "started_at": 1_780_000_000.0, "spend_period": period,
              **variant}
    results = {}
    for kind, one_request in (("short", True), ("general", False)):
        before = await _state(ledger, day, period)
        ended = ledger.metrics.tasks.labels("triage", fields["end_outcome"])._value.get()
        length = await ledger.redis.xlen(keys.records)
        line = ledger.record(rec(f"{kind}-task", one_request=one_request, **fields))
        await ledger.flush()
        task = _decoded(await ledger.redis.hgetall(keys.task(f"{kind}-task")))
        assert ledger.metrics.tasks.labels("triage", fields["end_outcome"])._value.get() == ended + 1
        entries: Any = await ledger.redis.xrange(keys.records, "-", "+")
        (entry,) = entries[length:]
        assert orjson.loads(entry[1][b"r"]) == orjson.loads(line)
        results[kind] = (task, _delta(before, await _state(ledger, day, period)))
    (short, short_delta), (general, general_delta) = results["short"], results["general"]
    assert short_delta == general_delta, "aggregates, per-actor aggregates and spend"
    assert short_delta["agg"][f"triage|{fields['end_outcome']}|tasks"] == 1
    strip = ONLY_WHEN_ENDING | {"task_id"}
    assert {k: v for k, v in short.items() if k not in strip} == {k: v for k, v in general.items() if k not in strip}
    assert short["task_id"] == "short-task" and short["status"] == fields["end_outcome"]
    assert "pmodel" in general and "pmodel" not in short, "the short path wrote it"
    assert 0 < await ledger.redis.ttl(keys.task("short-task")) <= 3600, "one_request_retention_hours"
    assert not await ledger.redis.exists(keys.attempts("short-task"))
    assert await ledger.redis.zscore(keys.tasks, "short-task") is None, "not listed"
    assert (await ledger.get("acme", "short-task"))["status"] == fields["end_outcome"]


async def test_a_one_request_task_after_a_reservation_releases_it(ledger: Ledger) -> None:
    keys = for_tenant("acme")
    period = ("20261203", "202612")
    assert await ledger.reserve("acme", "req-r", 5_000, None, period, ledger.config.budgets)
    ledger.record(rec("req-r", one_request=True, end_outcome="succeeded", cost=300, reserved_picousd=5_000,
                      spend_period=period))
    await ledger.flush()
    task = await ledger.get("acme", "req-r")
    assert (task["status"], task["cost_picousd"], task["reserved_picousd"]) == ("succeeded", 300, 0)
    spend = _decoded(await ledger.redis.hgetall(keys.spend(period)[0]))
    assert (int(spend["spent"]), int(spend["reserved"])) == (300, 0)


async def test_a_retried_one_request_task_takes_the_general_path(ledger: Ledger) -> None:
    request = uuid.uuid4().hex
    ledger.record(rec("req-retry", request=request, attempt=0, one_request=True, final=False, cost=100,
                      outcome="error", waste_reason="retry"))
    ledger.record(rec("req-retry", request=request, attempt=1, one_request=True, end_outcome="succeeded", cost=200))
    await ledger.flush()
    task = await ledger.get("acme", "req-retry")
    assert (task["status"], task["requests"], task["attempts"], task["cost_picousd"]) == ("succeeded", 1, 2, 300)
    assert task["waste_by_reason_picousd"]["retry"] == 100


# --- compact replies ------------------------------------------------------------------------


def test_compact_replies_unpack_to_the_results_they_stand_for() -> None:
    assert unpack_reply(b"1\x1e0\x1e2\x1ftriage\x1f10\x1fsucceeded\x1f0\x1fm\x1e-1\x1finvalid keys") == [
        1, 0, [2, b"triage", b"10", b"succeeded", b"0", b"m"], [-1, b"invalid keys"]]
    assert unpack_reply([1, 1]) == [1, 1], "another script's list reply is left as it is"


# --- the keys part's cost_per_success suffix, cached per config ------------------------------


async def test_a_reload_that_routes_a_model_by_cost_per_success_reaches_its_records(ledger: Ledger,
                                                                                    tmp_path: Path) -> None:
    keys = for_tenant("acme")
    record = rec("routed", model="m")
    assert '"route"' not in ledger._line(record, keys)[0]
    routed = parse(CONFIG.format(url="redis://127.0.0.1:1/7", spool=tmp_path / "spool") + """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-a, api_base: "http://a/v1", api_key: k}
routing:
  models:
    m: {strategy: cost_per_success, window: 100}
""", "test.yaml", {})
    ledger._source.replace(build_snapshot(routed, {}))  # type: ignore[attr-defined]
    head = orjson.loads(ledger._line(record, keys)[0].split("\x1e")[0])
    assert (head["route"], head["route_win"]) == (keys.route("m"), 100)
    assert '"route"' not in ledger._line(rec("routed", model="other"), keys)[0]


async def test_records_of_one_call_keep_their_own_keys(ledger: Ledger) -> None:
    """The RECORD script decodes the tenant's part of the keys once per call: records in one batch
    with different tasks, keys and days still reach their own keys."""
    keys = for_tenant("acme")
    for i, (task, key_spend, period) in enumerate([("a", ("k1",), ("20261201", "202612")),
                                                   ("b", ("k2",), ("20261201", "202612")),
                                                   ("a", ("k1",), ("20261202", "202612")),
                                                   ("c", (), ("20261202", "202612"))]):
        ledger.record(rec(task, cost=10 ** i, key_spend=key_spend, spend_period=period))
    await ledger.flush()
    spent = [int(await ledger.redis.hget(key, "spent") or 0) for key in (
        keys.key_spend("k1"), keys.key_spend("k2"), keys.spend(("20261201", ""))[0],
        keys.spend(("20261202", ""))[0])]
    assert spent == [1 + 100, 10, 1 + 10, 100 + 1000]
    assert [(await ledger.get("acme", t))["cost_picousd"] for t in "abc"] == [101, 10, 1000]


# --- EVALSHA without SCRIPT EXISTS ---------------------------------------------------------------


async def _script_calls(redis: Any) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_script", {}).get("calls", 0))


async def test_batches_ask_no_script_exists_and_survive_a_script_flush(ledger: Ledger) -> None:
    """A batch is one EVALSHA pipeline: no SCRIPT EXISTS round trip before it (redis-py's Script
    objects in a pipeline send one per batch). A store that lost its scripts (restarted without
    them, or SCRIPT FLUSH) answers NOSCRIPT: the scripts are loaded and the batch still lands."""
    keys = for_tenant("acme")
    ledger.record(rec("warm", cost=1))
    await ledger.flush()
    before = await _script_calls(ledger.redis)
    for n in range(5):  # five batches, one record each
        ledger.record(rec(f"t{n}", cost=2))
        await ledger.flush()
    assert await _script_calls(ledger.redis) == before, "no SCRIPT command per batch"
    await ledger.redis.script_flush()
    ledger.record(rec("after-flush", cost=3))
    await ledger.flush()
    assert ledger.dead.count == 0
    assert await ledger.redis.hget(keys.task("after-flush"), "cost_pusd") == b"3"
    assert await ledger.redis.hget(keys.task("t4"), "cost_pusd") == b"2"


async def test_an_intent_is_in_the_journal_before_the_turn_ends(ledger: Ledger) -> None:
    """The upstream request goes out later in the same event-loop turn as the intent: the intent's
    journal line must already be on disk then (a SIGKILL between the two leaves it behind)."""
    request = uuid.uuid4().hex
    journal = ledger.writer.journal
    ledger.intent(rec("journaled", request=request, attempt=999, outcome="interrupted", final=True))
    assert request in journal.path.read_text(), "written at once, not at the end of the turn"
    await ledger.flush()
