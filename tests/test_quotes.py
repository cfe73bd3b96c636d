"""Quotes, tasks opened ahead of their first request, and reports by model path, in-process.

Tasks are written through the real ledger (the in-process gateway, a scripted upstream,
a real Redis); the test then reads them back with ``GET /v1/tasks`` and computes the
quote on its own (the same seed), to compare with ``GET /v1/quotes``.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from gateway.accounting.quotes import QuoteSettings, Sample, quote
from tests.conftest import RedisServer
from tests.inproc import Harness
from tests.scripted import Step

_dbs = itertools.count(600)

CONFIG = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-a, api_base: "http://a/v1", api_key: key-a,
                     input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
    model_info: {id: a}
  - model_name: m
    litellm_params: {model: openai/gpt-b, api_base: "http://b/v1", api_key: key-b,
                     input_cost_per_token: 0.000003, output_cost_per_token: 0.000004}
    model_info: {id: b}
store: {url: REDIS_URL}
routing:
  retries: {max: 0, backoff_base_s: 0, backoff_max_s: 0}
tasks:
  types:
    triage: {price_usd: 0.0002, margin: 0.25}
quotes: {resamples: 300, seed: 7, min_ended: 20, min_succeeded: 5}
"""
SEED, RESAMPLES = 7, 300


def completion(prompt: int, out: int) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}})


FAIL = Step(500, orjson.dumps({"error": {"message": "down", "type": "t", "param": None, "code": "x"}}))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}"


@pytest.fixture
async def gw(redis_url: str) -> Any:
    async with Harness(CONFIG, redis_url) as h:
        yield h


def client(gw: Harness) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app), base_url="http://gw")


async def run_task(gw: Harness, task_id: str, requests: list[list[Step]], outcome: str | None,
                   task_type: str = "triage") -> None:
    for steps in requests:
        gw.transport.add(*steps)
        r = await gw.call("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                          [("X-Task-Id", task_id), ("X-Task-Type", task_type)])
        assert r.status == 200, r.body
    if outcome:
        r = await gw.call(f"/v1/tasks/{task_id}/complete", {"outcome": outcome})
        assert r.status == 200, r.body


def independent_quote(tasks: list[dict[str, Any]], margin: Decimal) -> dict[str, Any]:
    """The quote computed here, from ``GET /v1/tasks`` data, without gateway.accounting.quotes."""
    ended = sorted((t for t in tasks if t["status"] != "open"), key=lambda t: t["created_at"])
    rows = [(t["cost_picousd"], t["status"] == "succeeded") for t in ended]
    n, wins, total = len(rows), sum(w for _, w in rows), sum(c for c, _ in rows)
    rng = random.Random(SEED)
    stats = []
    for _ in range(RESAMPLES):
        draw = rng.choices(rows, k=n)
        cost, succ = sum(c for c, _ in draw), sum(w for _, w in draw)
        stats.append(cost // succ if succ else math.inf)
    stats.sort()
    rank = lambda xs, p: xs[min(len(xs), max(1, math.ceil(p * len(xs)))) - 1]  # noqa: E731
    costs = sorted(c for c, _ in rows)
    cps = Decimal(total) / Decimal(10**12) / wins
    low, high = rank(stats, 0.025), rank(stats, 0.975)
    paths: dict[str, list[int]] = {}
    for t in ended:
        path = " + ".join(sorted({f"{m['model']}@{m['deployment']}" for m in t["models"]}))
        paths.setdefault(path, []).append(t["cost_picousd"])
    return {"n": n, "wins": wins, "cps": cps, "low": Decimal(low) / 10**12, "high": Decimal(high) / 10**12,
            "p50": Decimal(rank(costs, 0.5)) / 10**12, "p90": Decimal(rank(costs, 0.9)) / 10**12,
            "p99": Decimal(rank(costs, 0.99)) / 10**12, "price": cps / (1 - margin),
            "price_upper": Decimal(high) / 10**12 / (1 - margin), "paths": {p: len(v) for p, v in paths.items()}}


async def test_quote_equals_an_independent_computation(gw: Harness) -> None:
    outcomes = ["succeeded", "succeeded", "failed", "succeeded", "abandoned", "succeeded"]
    for i in range(30):
        ok = Step(200, completion(10 + i, 5 + 3 * (i % 7)))
        requests = [[ok]] if i % 4 else [[FAIL, ok]]  # every fourth task falls back from a to b
        await run_task(gw, f"t{i}", requests * (1 + i % 2), outcomes[i % len(outcomes)])
    await run_task(gw, "open-one", [[Step(200, completion(10, 5))]], None)  # open tasks are not history
    await run_task(gw, "other-type", [[Step(200, completion(10, 5))]], "succeeded", task_type="other")
    async with client(gw) as c:
        listed = (await c.get("/v1/tasks", params={"task_type": "triage", "limit": 200})).json()["data"]
        t0 = time.perf_counter()
        r = await c.get("/v1/quotes", params={"task_type": "triage"})
        print(f"quote over 30 tasks: {time.perf_counter() - t0:.3f}s")
    assert r.status_code == 200, r.text
    q, want = r.json(), independent_quote(listed, Decimal("0.25"))
    assert q["enough_history"] is True and q["margin"] == "0.25" and q["margin_source"] == "tasks.types.triage.margin"
    assert (q["sample"]["ended"], q["sample"]["succeeded"]) == (want["n"], want["wins"]) == (30, 20)
    assert Decimal(q["expected_cost_per_success_usd"]) == want["cps"].quantize(Decimal("1e-18"))
    assert Decimal(q["interval"]["low_usd"]) == want["low"] and Decimal(q["interval"]["high_usd"]) == want["high"]
    assert Decimal(q["interval"]["low_usd"]) <= want["cps"] <= Decimal(q["interval"]["high_usd"])
    for p in ("p50", "p90", "p99"):
        assert Decimal(q["cost_per_job_usd"][p]) == want[p]
    assert Decimal(q["suggested_price_usd"]) - want["price"] < Decimal("1e-12")
    assert Decimal(q["suggested_price_usd"]) >= want["price"]
    assert abs(Decimal(q["suggested_price_upper_usd"]) - want["price_upper"]) < Decimal("1e-12")
    assert {row["model_path"]: row["jobs"] for row in q["by_model_path"]} == want["paths"] \
        == {"m@a": 22, "m@a + m@b": 8}
    assert q["success_rate"] == pytest.approx(20 / 30)

    async with client(gw) as c:  # ?margin= overrides the type's; a bad one is 400
        r2 = (await c.get("/v1/quotes", params={"task_type": "triage", "margin": "0.5"})).json()
        assert Decimal(r2["suggested_price_usd"]) >= want["cps"] * 2 > Decimal(r2["suggested_price_usd"]) - \
            Decimal("1e-12")
        for params in ({"task_type": "triage", "margin": "1"}, {"task_type": "triage", "margin": "x"},
                       {"task_type": "triage", "window": "7 days"}, {}, {"task_type": "bad type!"}):
            bad = await c.get("/v1/quotes", params=params)
            assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error", params
        # a window that holds none of them: not enough history, and no price
        empty = (await c.get("/v1/quotes", params={"task_type": "triage", "until": time.time() - 86400})).json()
        assert empty["sample"]["ended"] == 0 and empty["suggested_price_usd"] is None


async def test_too_little_history_is_never_a_confident_number(gw: Harness) -> None:
    for i in range(6):
        await run_task(gw, f"few{i}", [[Step(200, completion(10, 5))]], "succeeded" if i % 2 else "failed")
    async with client(gw) as c:
        q = (await c.get("/v1/quotes", params={"task_type": "triage"})).json()
    assert q["enough_history"] is False and "not enough history" in q["reason"]
    assert q["expected_cost_per_success_usd"] is None and q["suggested_price_usd"] is None
    assert q["suggested_price_upper_usd"] is None
    assert q["observed_cost_per_success_usd"] is not None  # what was seen, stated as such
    assert (q["sample"]["ended"], q["sample"]["succeeded"]) == (6, 3)


def test_edges_of_the_statistic() -> None:
    settings = QuoteSettings(margin=Decimal("0.3"), resamples=200, min_ended=3, min_succeeded=1)
    empty = quote([], settings)
    assert empty["enough_history"] is False and empty["sample"]["ended"] == 0 and empty["success_rate"] is None
    assert empty["interval"]["low_usd"] is None and empty["cost_per_job_usd"]["p50"] is None
    lost = quote([Sample(10**9, "failed", "m@a")] * 25, settings)  # nothing ever succeeded: no number at all
    assert lost["enough_history"] is False and lost["observed_cost_per_success_usd"] is None
    assert lost["interval"]["high_usd"] is None and lost["suggested_price_usd"] is None
    # one success in many: enough by the settings, but the interval's top is unbounded, so no upper price
    rare = quote([Sample(10**9, "failed", "m@a")] * 40 + [Sample(10**9, "succeeded", "m@a")], settings)
    assert rare["enough_history"] is True and rare["interval"]["high_usd"] is None
    assert rare["suggested_price_usd"] == "0.058571428572" and rare["suggested_price_upper_usd"] is None


def test_bootstrap_is_fast_enough_for_the_sample_cap() -> None:
    rng = random.Random(1)
    samples = [Sample(rng.randrange(10**8, 10**11), rng.choice(["succeeded", "failed"]), "m@a", 10)
               for _ in range(5000)]
    t0 = time.perf_counter()
    q = quote(samples, QuoteSettings(margin=Decimal("0.3")))
    took = time.perf_counter() - t0
    print(f"bootstrap 5000 tasks x 1000 resamples: {took:.2f}s")
    assert q["enough_history"] and took < 5
    low, high = Decimal(q["interval"]["low_usd"]), Decimal(q["interval"]["high_usd"])
    assert low < Decimal(q["expected_cost_per_success_usd"]) < high


async def test_open_task_holds_later_requests_to_its_budget(gw: Harness) -> None:
    for i in range(3):
        await run_task(gw, f"h{i}", [[Step(200, completion(10, 5))]], "succeeded")
    async with client(gw) as c:
        r = await c.post("/v1/tasks", json={"task_id": "job-1", "task_type": "triage", "max_cost_usd": "0.000000001"})
        assert r.status_code == 201, r.text
        task = r.json()
        assert task["task_id"] == "job-1" and task["status"] == "open" and task["task_type"] == "triage"
        assert task["budget_picousd"] == 1000 and task["quote"]["task_type"] == "triage"
        assert task["quote"]["enough_history"] is False and task["quote"]["sample"]["ended"] == 3
        again = await c.post("/v1/tasks", json={"task_id": "job-1"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "task_exists"
        gen = await c.post("/v1/tasks", json={"max_cost_usd": 5})
        assert gen.status_code == 201 and gen.json()["task_id"].startswith("task-")
        assert gen.json()["quote"] is None and "task_type" in gen.json()["quote_reason"]
        assert gen.json()["budget_picousd"] == 5 * 10**12
        for body in ([], {"task_id": "a b"}, {"task_id": 3}, {"task_type": ""}, {"max_cost_usd": "-1"},
                     {"max_cost_usd": "abc"}, {"max_cost_usd": True}, {"max_cost_usd": "1e10"}, {"extra": 1},
                     {"max_cost_usd": "1e-13"}, {"max_cost_usd": "NaN"}, {"max_cost_usd": [1]}, {"task_type": 5}):
            bad = await c.post("/v1/tasks", json=body)
            assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error", body
        bad = await c.post("/v1/tasks", content=b"{not json")
        assert bad.status_code == 400
        bare = await c.post("/v1/tasks")  # no body: a task of type default, with a generated id
        assert bare.status_code == 201 and bare.json()["task_type"] == "default" and bare.json()["quote"] is None
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    gw.transport.add(Step(200, completion(10, 5)))
    refused = await gw.call("/v1/chat/completions", body, [("X-Task-Id", "job-1")])
    assert refused.status == 429 and refused.json()["error"]["code"] == "budget_exceeded", refused.body
    assert b"task budget of task 'job-1'" in refused.body
    fine = await gw.call("/v1/chat/completions", body, [("X-Task-Id", "job-2")])  # not opened: no budget
    assert fine.status == 200
    async with client(gw) as c:  # the opened task keeps its type when a request joins it
        opened = await c.post("/v1/tasks", json={"task_id": "job-3", "task_type": "triage"})
        assert opened.status_code == 201
    gw.transport.add(Step(200, completion(10, 5)))
    joined = await gw.call("/v1/chat/completions", body, [("X-Task-Id", "job-3")])
    assert joined.status == 200
    async with client(gw) as c:
        task = (await c.get("/v1/tasks/job-3")).json()
    assert task["task_type"] == "triage" and task["requests"] == 1 and task["budget_picousd"] is None


async def test_report_by_model_path(gw: Harness) -> None:
    for i in range(8):
        ok = Step(200, completion(10, 10))
        await run_task(gw, f"r{i}", [[ok]] if i < 5 else [[FAIL, ok]], "succeeded" if i % 4 else "failed")
    async with client(gw) as c:
        a = (await c.get("/v1/reports/models")).json()
        b = (await c.get("/v1/reports/tasks", params={"by": "model"})).json()
        assert (await c.get("/v1/reports/tasks", params={"by": "colour"})).status_code == 400
        listed = (await c.get("/v1/tasks", params={"limit": 200})).json()["data"]
    assert a["data"] == b["data"]
    rows = {r["model_path"]: r for r in a["data"]}
    assert set(rows) == {"m@a", "m@a + m@b"}
    for path, row in rows.items():
        mine = [t for t in listed
                if " + ".join(sorted({f"{m['model']}@{m['deployment']}" for m in t["models"]})) == path]
        wins = [t for t in mine if t["status"] == "succeeded"]
        cost = sum(t["cost_picousd"] for t in mine)
        assert row["jobs"] == len(mine) and row["succeeded"] == len(wins) and row["task_type"] == "triage"
        assert Decimal(row["cost_per_succeeded_job_usd"]) == (Decimal(cost) / 10**12 / len(wins)).quantize(
            Decimal("1e-18"))
        tokens = sum(t["input_tokens"] + t["output_tokens"] for t in mine)
        assert row["tokens_per_succeeded_job"] == pytest.approx(tokens / len(wins))
        margin = int(Decimal("0.0002") * 10**12) * len(wins) - cost
        assert Decimal(row["margin_usd"]) == Decimal(margin) / 10**12
    assert rows["m@a"]["jobs"] == 5 and rows["m@a + m@b"]["jobs"] == 3


async def test_the_request_path_remembers_only_answers_that_cannot_change(gw: Harness) -> None:
    opened = gw.app.services.ledger.opened
    assert await opened.budget("default", "pre") is None
    assert ("default", "pre") not in opened._known  # not in the store yet: it may still be opened
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    gw.transport.add(Step(200, completion(10, 5)))
    assert (await gw.call("/v1/chat/completions", body, [("X-Task-Id", "joined-first")])).status == 200
    await gw.flush()
    async with client(gw) as c:
        late = await c.post("/v1/tasks", json={"task_id": "joined-first", "max_cost_usd": "0.000000001"})
        assert late.status_code == 409  # a task that already exists cannot be opened (or given a budget) later
    opened._known.clear()
    assert await opened.budget("default", "joined-first") is None
    assert opened._known[("default", "joined-first")] is None  # exists and was not opened: final
    async with client(gw) as c:
        assert (await c.post("/v1/tasks", json={"task_id": "pre", "max_cost_usd": "0.000000001"})).status_code == 201
    opened._known.clear()  # as another worker or replica would see it: from the store
    gw.transport.add(Step(200, completion(10, 5)))
    refused = await gw.call("/v1/chat/completions", body, [("X-Task-Id", "pre")])
    assert refused.status == 429 and opened._known[("default", "pre")] == 1000
