"""The ledger you can bill from, in-process against a real Redis: keys no id can collide,
one bad record never takes others with it, a dead process's journal is replayed, an
expired intent is settled as interrupted and gives its reservation back, and the store
grows by a bounded number of bytes per request."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import orjson
import pytest

from gateway.accounting.metrics import Metrics
from gateway.config.load import ConfigError, parse
from gateway.ledger.journal import Journal
from gateway.ledger.keys import for_tenant
from gateway.ledger.ledger import Ledger
from gateway.ledger.writer import Op
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
    url = redis_server.url.rsplit("/", 1)[0] + "/5"
    config = parse(CONFIG.format(url=url, spool=tmp_path / "spool"), "test.yaml", {})
    async with running_ledger(url, config) as led:
        yield led


# --- keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["acme:prod", "a{b}", "x y", "", "ü", "a" * 65])
def test_tenant_names_that_could_collide_are_refused(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"auth: {{keys: [{{key: sk-12345678, tenant: {orjson.dumps(name).decode()}}}]}}\n", "t.yaml", {})
    assert "tenant" in str(info.value) and name[:10] in str(info.value)


@pytest.mark.parametrize(("a", "b"), [("poison", "poison:attempts"), ("x", "x:att"), ("t", "tasks")])
def test_no_task_id_can_reach_another_key(a: str, b: str) -> None:
    keys = for_tenant("acme")
    made = {keys.task(a), keys.attempts(a), keys.task(b), keys.attempts(b), keys.tasks, keys.open,
            keys.records, keys.intents, keys.deadlines}
    assert len(made) == 9
    assert all(k.startswith("tg:{acme}:") for k in made), "one hash tag: one Redis Cluster slot per tenant"


async def test_poisoning_ids_cost_the_poisoner_and_nobody_else(ledger: Ledger) -> None:
    for i in range(50):
        ledger.record(rec("poison", tenant="mallory", cost=1))
        ledger.record(rec("poison:attempts", tenant="mallory", cost=1))
        ledger.record(rec("honest", tenant="acme", cost=2))
    await ledger.flush()
    assert (await ledger.get("mallory", "poison"))["cost_picousd"] == 50
    assert (await ledger.get("mallory", "poison:attempts"))["cost_picousd"] == 50
    assert (await ledger.get("acme", "honest"))["cost_picousd"] == 100
    assert ledger.dead.count == 0


# --- isolation and dead letters ---------------------------------------------------------


async def test_a_refused_record_is_dead_lettered_and_its_batch_still_counts(ledger: Ledger) -> None:
    good = [rec("batch", cost=10) for _ in range(20)]
    keys = for_tenant("acme")
    bad_record = {**orjson.loads(ledger.record(good[0])), "input_tokens": -5, "request_id": "bad-1"}
    bad_keys = {"task": keys.task("batch"), "seenp": keys.seen_prefix, "settledp": keys.settled_prefix,
                "dedup_ttl": 60}
    bad = Op("record", orjson.dumps(bad_keys).decode() + "\x1e" + orjson.dumps(bad_record).decode(), keys.tasks)
    for r in good[1:10]:
        ledger.record(r)
    ledger.writer.submit(bad)  # in the same batch as good records before and after it
    for r in good[10:]:
        ledger.record(r)
    await ledger.flush()
    assert (await ledger.get("acme", "batch"))["cost_picousd"] == 200, "all 20 good records counted"
    assert ledger.dead.count == 1
    lines = ledger.dead.path.read_text().splitlines()
    assert len(lines) == 1 and "invalid input_tokens" in orjson.loads(lines[0])["reason"]
    assert ledger.metrics.dead_letters.labels("record")._value.get() == 1


async def test_huge_usage_is_refused_whole_never_overflowed(ledger: Ledger) -> None:
    from providers.base import Usage

    ledger.record(rec("huge", usage=Usage(10**16, 1), cost=5))
    ledger.record(rec("huge", cost=7))
    await ledger.flush()
    task = await ledger.get("acme", "huge")
    assert (task["cost_picousd"], task["input_tokens"]) == (7, 10), "the absurd record changed nothing"
    assert ledger.dead.count == 1


# --- the journal -------------------------------------------------------------------------


async def test_a_dead_process_journal_is_replayed_once(ledger: Ledger, tmp_path: Path) -> None:
    # what a process killed with SIGKILL leaves: ops written to its journal, the first two acknowledged
    dead_pid = 4_000_000 + os.getpid() % 1000  # no such process
    journal = Journal(ledger.writer.spool.dir)
    journal.path = journal.dir / f"journal-{dead_pid}.log"
    records = [rec("journaled", cost=100) for _ in range(5)]
    for r in records:
        keys = for_tenant(r.tenant)
        arg, _ = ledger._line(r, keys)
        journal.append("record", keys.tasks, arg)
    journal.ack(2, idle=False)
    with open(journal.path, "ab") as fh:
        fh.write(b"7\trecord\tcut-mid-wr")  # the kill cut the last write
    journal.close(clean=False)
    for r in records[:2]:  # what the acknowledgement says reached Redis
        ledger.record(r)
    await ledger.flush()
    restarted = Ledger(ledger.redis, ledger._source, Metrics())
    await restarted.start()  # finds the dead journal, moves the 3 unacknowledged ops to the spool
    assert not journal.path.exists()
    for _ in range(60):
        await asyncio.sleep(0.1)
        task = await ledger.get("acme", "journaled")
        if task["requests"] == 5:
            break
    await asyncio.sleep(0.3)
    await restarted.stop()
    task = await ledger.get("acme", "journaled")
    assert (task["requests"], task["cost_picousd"]) == (5, 500), "each journaled record exactly once"


# --- intents ------------------------------------------------------------------------------


async def test_an_expired_intent_is_settled_as_interrupted_and_releases_its_reservation(ledger: Ledger) -> None:
    from providers.base import Usage

    budgets = ledger.config.budgets
    period = ("20261203", "202612")
    assert await ledger.reserve("acme", "crashed", 5_000, 10**12, period, budgets)
    request = uuid.uuid4().hex
    ledger.intent(rec("crashed", request=request, attempt=999, outcome="interrupted", usage=Usage(40, 0),
                      usage_source="estimated", cost=400, final=True, waste_reason="interrupted",
                      reserved_picousd=5_000, spend_period=period))
    # ... and the process dies: no final record, no renewal
    ledger._in_flight.clear()
    await ledger.flush()
    keys = for_tenant("acme")
    assert await ledger.redis.hexists(keys.intents, request)
    assert await ledger.sweep_once(now=time.time()) == 0 and await ledger.redis.hexists(keys.intents, request), \
        "not before its lease runs out"
    await ledger.sweep_once(now=time.time() + 6)
    task = await ledger.get("acme", "crashed")
    assert (task["cost_picousd"], task["attempts"]) == (400, 1)
    attempt = (await ledger.attempts("acme", "crashed"))[0]
    assert (attempt["outcome"], attempt["usage_source"], attempt["waste_reason"]) == (
        "interrupted", "estimated", "interrupted")
    spend = await ledger.redis.hgetall(keys.spend(period)[0])
    assert int(spend[b"reserved"]) == 0 and int(spend[b"spent"]) == 400, "the reservation came back"
    assert int((await ledger.redis.hget(keys.task("crashed"), "reserved_pusd")) or 0) == 0
    # the request's own final record arriving later (a replayed journal) does not count twice
    ledger.record(rec("crashed", request=request, attempt=0, cost=1234, final=True))
    await ledger.flush()
    assert (await ledger.get("acme", "crashed"))["cost_picousd"] == 400
    assert ledger.metrics.interrupted._value.get() == 1


async def test_a_final_record_removes_its_intent(ledger: Ledger) -> None:
    request = uuid.uuid4().hex
    ledger.intent(rec("fine", request=request, attempt=999, outcome="interrupted", final=True))
    ledger.record(rec("fine", request=request, attempt=0, cost=10, final=True))
    await ledger.flush()
    keys = for_tenant("acme")
    assert not await ledger.redis.hexists(keys.intents, request)
    await ledger.sweep_once(now=time.time() + 3600)
    assert ledger.metrics.interrupted._value.get() == 0
    assert (await ledger.get("acme", "fine"))["cost_picousd"] == 10
    assert request not in ledger._in_flight


async def test_leases_of_requests_in_flight_are_renewed(ledger: Ledger) -> None:
    request = uuid.uuid4().hex
    ledger.intent(rec("long", request=request, attempt=999, outcome="interrupted", final=True))
    await ledger.flush()
    keys = for_tenant("acme")
    first = await ledger.redis.zscore(keys.deadlines, request)
    await asyncio.sleep(2.2)  # the lease is 5 s: renewed every 5/3 s
    await ledger.flush()
    assert await ledger.redis.zscore(keys.deadlines, request) > first
