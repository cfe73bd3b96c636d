"""cost_per_success through the real gateway: a simulation with fakes.

The gateway runs in-process (tests/inproc.py) with a scripted upstream and a
redis-server of this module's own. The test is the client: it runs jobs of one
task type, each job as a task (X-Task-Id, X-Task-Type), and ends every task
succeeded or failed by which deployment served it, with a seeded RNG. A failed
job is retried by the client as a new task for the same work.

    A  cheap per token, 40 % of its jobs succeed
    B  1.7x A's price per token, 95 % succeed
    C  (added by a hot reload) half A's price, 95 % succeed

The strategy must move the task type to B, then to C, each within a bound, and
the numbers in the shared store must equal an independent computation over the
records of the tasks.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from random import Random
from typing import AsyncIterator

import orjson
import pytest

from gateway.ledger.keys import for_tenant
from gateway.upstream.outcomes import SCALE, parse_route_hash
from tests.conftest import RedisServer
from tests.inproc import Harness
from tests.scripted import Step

_dbs = itertools.count(1)

DEPLOYMENT = """
  - model_name: m
    litellm_params: {{model: openai/gpt-{id}, api_base: "http://{id}/v1", api_key: key-{id},
                     input_cost_per_token: {price}, output_cost_per_token: {price}}}
    model_info: {{id: {id}}}
"""
SUCCESS = {"a": 0.40, "b": 0.95, "c": 0.95}
PRICE = {"a": "0.000001", "b": "0.0000017", "c": "0.0000005"}
ROUTING = """
store: {url: REDIS_URL}
routing:
  retries: {max: 0, backoff_base_s: 0, backoff_max_s: 0}
  models:
    m: {strategy: cost_per_success, min_success_rate: 0.8, explore_share: 0.1, min_samples: 10, window: 100}
"""
WINDOW = 100
COMPLETION = orjson.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 100, "completion_tokens": 100, "total_tokens": 200}})
CHAT = {"model": "m", "messages": [{"role": "user", "content": "triage this ticket"}]}


def config(*ids: str) -> str:
    return "model_list:" + "".join(DEPLOYMENT.format(id=i, price=PRICE[i]) for i in ids) + ROUTING


@pytest.fixture(scope="module")
def own_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer()  # not the session's: this module's numbers are its own
    server.start()
    yield server  # type: ignore[misc]
    server.stop()


@pytest.fixture
def redis_url(own_redis: RedisServer) -> str:
    return f"redis://127.0.0.1:{own_redis.port}/{next(_dbs)}"


class Client:
    """Runs jobs: one task per try, ended by the outcome of the deployment that served it."""

    def __init__(self, h: Harness, seed: int, task_type: str = "triage") -> None:
        self.h, self.rng, self.task_type = h, Random(seed), task_type
        self.served: list[str] = []  # the deployment of every task, in order
        self.ended: list[tuple[str, str, str]] = []  # (task id, deployment, outcome)
        self.n = 0

    async def task(self) -> bool:
        self.n += 1
        task_id = f"{self.task_type}-{self.n}"
        self.h.transport.add(Step(200, COMPLETION))
        r = await self.h.call("/v1/chat/completions", CHAT,
                              [("X-Task-Id", task_id), ("X-Task-Type", self.task_type)])
        assert r.status == 200, r.body
        dep = self.h.transport.sent[-1].url.split("//")[1].split("/")[0]
        ok = self.rng.random() < SUCCESS[dep]
        outcome = "succeeded" if ok else "failed"
        done = await self.h.call(f"/v1/tasks/{task_id}/complete", {"outcome": outcome})
        assert done.status == 200, done.body
        await self.h.app.services.outcomes.sync()  # what the sync loop does every second
        self.served.append(dep)
        self.ended.append((task_id, dep, outcome))
        return ok

    async def job(self) -> None:
        """One piece of work: retried as a new task until a task succeeds."""
        while not await self.task():
            pass

    async def until(self, dep: str, bound: int, last: int = 50, share: float = 0.8) -> int:
        """Runs jobs until ``share`` of the last ``last`` tasks went to ``dep``; returns the tasks it took."""
        start = len(self.served)
        while len(self.served) - start < bound:
            await self.job()
            recent = self.served[start:][-last:]
            if len(recent) >= last and recent.count(dep) >= share * last:
                return len(self.served) - start
        raise AssertionError(f"not moved to {dep} within {bound} tasks: "
                             f"{ {d: self.served[start:].count(d) for d in 'abc'} }")


async def route_hash(h: Harness) -> dict[str, dict[str, tuple[float, float, int]]]:
    raw = await h.app.services.store.hgetall(for_tenant("default").route("m"))
    return {t: {d: (a.jobs, a.successes, a.cost_picousd) for d, a in arms.items()}
            for t, arms in parse_route_hash(raw).items()}


def independent(h: Harness, ended: list[tuple[str, str, str]]) -> dict[str, tuple[float, float, int]]:
    """The decayed counters, recomputed from the attempt records and the outcomes (the Lua's integer rule)."""
    cost: dict[str, int] = {}
    for rec in h.records:
        cost[rec.task_id] = cost.get(rec.task_id, 0) + (rec.cost_picousd or 0)
    arms: dict[str, list[int]] = {}
    for task_id, dep, outcome in ended:
        j, s, c = arms.setdefault(dep, [0, 0, 0])
        arms[dep] = [j - j // WINDOW + SCALE, s - s // WINDOW + (SCALE if outcome == "succeeded" else 0),
                     c - c // WINDOW + cost[task_id]]
    return {d: (j / SCALE, s / SCALE, c) for d, (j, s, c) in arms.items()}


async def test_moves_to_the_reliable_deployment_then_to_a_cheaper_reliable_one(redis_url: str) -> None:
    async with Harness(config("a", "b"), redis_url) as h:
        import random
        h.app.router.rng = random.Random(20240601)
        client = Client(h, seed=7)
        to_b = await client.until("b", bound=300)
        print(f"\ncost_per_success: {to_b} tasks until >= 80% of the last 50 went to B "
              f"(A: {client.served.count('a')}, B: {client.served.count('b')})")

        h.reload(config("a", "b", "c"))
        before = len(client.served)
        to_c = await client.until("c", bound=300)
        after = client.served[before:]
        print(f"cost_per_success: {to_c} tasks after adding C until >= 80% of the last 50 went to C "
              f"(A: {after.count('a')}, B: {after.count('b')}, C: {after.count('c')})")

        # the shared numbers equal an independent computation over the ledger's records
        stored = (await route_hash(h))["triage"]
        expected = independent(h, client.ended)
        assert set(stored) == set(expected) == {"a", "b", "c"}
        for dep in expected:
            assert stored[dep] == pytest.approx(expected[dep], abs=1e-9), dep

        # explain shows the numbers behind the choice
        r = await h.call("/v1/route/explain", CHAT, [("X-Task-Type", "triage")])
        detail = r.json()["strategy_detail"]
        assert detail["task_type"] == "triage" and detail["min_success_rate"] == 0.8
        arms = {a["deployment"]: a for a in detail["arms"]}
        assert arms["a"]["meets_min_success_rate"] is False and arms["c"]["meets_min_success_rate"] is True
        assert arms["c"]["jobs"] == pytest.approx(stored["c"][0], abs=1e-3)
        assert float(arms["c"]["cost_per_success_usd"]) < float(arms["b"]["cost_per_success_usd"])
        if not detail["explored"]:
            assert detail["chosen"] == "c"
        assert set(arms["c"]) >= {"jobs", "successes", "success_rate", "cost_per_job_usd", "cost_per_success_usd",
                                  "samples", "enough_samples", "meets_min_success_rate"}

        # another task type has numbers of its own (none yet): the configured order
        r = await h.call("/v1/route/explain", CHAT, [("X-Task-Type", "summarize")])
        await h.app.services.outcomes.sync()
        r = await h.call("/v1/route/explain", CHAT, [("X-Task-Type", "summarize")])
        assert all(a["jobs"] == 0 for a in r.json()["strategy_detail"]["arms"])


async def test_every_replica_reads_the_same_numbers(redis_url: str) -> None:
    """Two gateways on one store: jobs ended through one are in the other's decisions after a sync."""
    async with Harness(config("a", "b"), redis_url) as one:
        two = Harness(config("a", "b"), redis_url)
        two.app.metrics = one.app.metrics.__class__()  # its own registry
        client = Client(one, seed=3)
        for _ in range(12):
            await client.task()
        total = sum(j for j, _, _ in independent(one, client.ended).values())  # 12 jobs, decayed
        async with _no_flush(two):
            await two.call("/v1/route/explain", CHAT, [("X-Task-Type", "triage")])  # asks for the model
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the sync loop (1 s), not an explicit sync
                r2 = (await two.call("/v1/route/explain", CHAT, [("X-Task-Type", "triage")])).json()
                if sum(a["jobs"] for a in r2["strategy_detail"]["arms"]) == pytest.approx(total, abs=0.01):
                    break
                await asyncio.sleep(0.2)
            r1 = (await one.call("/v1/route/explain", CHAT, [("X-Task-Type", "triage")])).json()
            assert r1["strategy_detail"]["arms"] == r2["strategy_detail"]["arms"]
            assert sum(a["jobs"] for a in r2["strategy_detail"]["arms"]) == pytest.approx(total, abs=0.01)


async def test_an_abandoned_task_is_a_failed_job_of_its_last_deployment(redis_url: str) -> None:
    async with Harness(config("a", "b"), redis_url) as h:
        h.transport.add(Step(200, COMPLETION))
        r = await h.call("/v1/chat/completions", CHAT, [("X-Task-Id", "idle-1"), ("X-Task-Type", "triage")])
        assert r.status == 200
        dep = h.transport.sent[-1].url.split("//")[1].split("/")[0]
        await h.flush()
        assert await h.app.services.ledger.sweep_once(now=time.time() + 10**6) == 1
        stored = (await route_hash(h))["triage"]
        assert stored == {dep: (1.0, 0.0, h.records[-1].cost_picousd)}


async def test_one_request_tasks_count_in_the_shared_default_bucket(redis_url: str) -> None:
    async with Harness(config("a", "b"), redis_url) as h:
        h.transport.add(Step(200, COMPLETION), Step(200, COMPLETION))
        for _ in range(2):
            assert (await h.call("/v1/chat/completions", CHAT)).status == 200
        await h.flush()
        stored = await route_hash(h)
        assert list(stored) == ["default"]
        # both to the first deployment (configured order): the second job decays the first by 1/window
        first, second = (r.cost_picousd or 0 for r in h.records)
        assert stored["default"] == {"a": (2 - 1 / WINDOW, 2 - 1 / WINDOW, first - first // WINDOW + second)}


class _no_flush:
    """Starts a second Harness on the same database without flushing it."""

    def __init__(self, h: Harness) -> None:
        self.h = h

    async def __aenter__(self) -> Harness:
        from dataclasses import replace

        from gateway.accounting.accountant import Accountant
        from gateway.services import open_services
        from tests.inproc import Tap

        services = await open_services(self.h.app.snapshots, self.h.app.metrics, transport=self.h.transport)
        self.h.tap = Tap(services.ledger)
        await self.h.app.start(replace(services, accountant=Accountant(services.metrics, self.h.tap)))
        return self.h

    async def __aexit__(self, *exc: object) -> None:
        await self.h.app.stop()
