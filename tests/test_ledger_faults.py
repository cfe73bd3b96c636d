"""Fault tests of the ledger through real gateway processes: concurrency across replicas, a killed
Redis, budgets under load, sweeping across replicas, tenant isolation, cancelled and dropped streams."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Callable

import httpx
import openai
import pytest
import redis

from gateway.accounting.pricing import PICO
from gateway.ledger.keys import for_tenant
from tests.conftest import Fakes, RedisServer, base_config, model_entry

PROMPT = [{"role": "user", "content": "count these five words"}]


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def task(gw: Any, task_id: str, key: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{gw.url}/v1/tasks/{task_id}", headers=headers, timeout=10).json()


def client(gw: Any, key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def test_three_gateways_one_task_lose_no_update(clean_fakes: Fakes, redis_server: RedisServer,
                                                gateway_factory: Any) -> None:
    fakes = clean_fakes
    cfg = base_config(redis_server.url, [model_entry("chat", fakes.params("openai"), id="oa"),
                                         model_entry("chat-b", fakes.params("bedrock"), id="br")])
    gws = [gateway_factory(cfg) for _ in range(3)]
    costs: list[Decimal] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        raw = client(gws[i % 3]).chat.completions.with_raw_response.create(
            model="chat" if i % 2 else "chat-b", messages=PROMPT, extra_headers={"X-Task-Id": "shared-job"})
        with lock:
            costs.append(Decimal(raw.headers["x-request-cost-usd"]))

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(one, range(90)))
    billed_in = fakes.openai.billed.input_tokens + fakes.bedrock.billed.input_tokens
    billed_out = fakes.openai.billed.output_tokens + fakes.bedrock.billed.output_tokens
    wait_for(lambda: task(gws[0], "shared-job")["requests"] == 90, what="all 90 records")
    t = task(gws[1], "shared-job")
    assert (t["attempts"], t["input_tokens"], t["output_tokens"]) == (90, billed_in, billed_out)
    assert t["cost_picousd"] == int(sum(costs) * PICO), "the ledger equals the sum of X-Request-Cost-USD"


def test_redis_killed_mid_load_loses_and_doubles_nothing(clean_fakes: Fakes, gateway_factory: Any,
                                                         tmp_path: Any) -> None:
    fakes = clean_fakes
    store = RedisServer(persistent=True)
    store.start()
    try:
        cfg = base_config(store.url, [model_entry("chat", fakes.params("openai"), id="oa"),
                                      model_entry("chat-o", fakes.params("ollama"), id="ol")])
        gws = [gateway_factory(cfg) for _ in range(2)]
        errors: list[Exception] = []
        done = threading.Event()

        def load() -> None:
            for i in range(120):
                try:
                    model = "chat" if i % 3 else "chat-o"
                    stream = i % 4 == 0
                    r = client(gws[i % 2]).chat.completions.create(model=model, messages=PROMPT, stream=stream,
                                                                   extra_headers={"X-Task-Id": "outage-job"})
                    if stream:
                        list(r)
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)
                time.sleep(0.01)
            done.set()

        worker = threading.Thread(target=load)
        worker.start()
        wait_for(lambda: fakes.openai.billed.requests + fakes.ollama.billed.requests >= 30, what="load")
        store.kill()
        wait_for(lambda: fakes.openai.billed.requests + fakes.ollama.billed.requests >= 70, what="load in outage")
        store.start()  # same port, same append-only file
        worker.join(60)
        assert done.is_set() and errors == [], "requests keep being served while Redis is down (fail-open)"

        billed_in = fakes.openai.billed.input_tokens + fakes.ollama.billed.input_tokens
        billed_out = fakes.openai.billed.output_tokens + fakes.ollama.billed.output_tokens
        wait_for(lambda: task(gws[0], "outage-job").get("requests") == 120, timeout=20, what="spool replay")
        t = task(gws[1], "outage-job")
        assert (t["requests"], t["input_tokens"], t["output_tokens"]) == (120, billed_in, billed_out)
        assert any("spooled" in gw.log() for gw in gws), "the outage really hit the ledger writer"
    finally:
        store.stop()


def test_fail_closed_refuses_while_the_store_is_down(clean_fakes: Fakes, gateway_factory: Any) -> None:
    store = RedisServer()
    store.start()
    try:
        cfg = base_config(store.url, [model_entry("chat", clean_fakes.params("openai"))])
        cfg["store"]["on_unavailable"] = "fail_closed"
        gw = gateway_factory(cfg)
        c = client(gw)
        c.chat.completions.create(model="chat", messages=PROMPT)
        store.kill()  # the next ledger write finds the store gone; from then on requests are refused

        def refused() -> bool:
            try:
                c.chat.completions.create(model="chat", messages=PROMPT)
            except openai.APIStatusError as exc:
                return exc.status_code == 503 and exc.code == "store_unavailable"
            return False

        wait_for(refused, timeout=10, what="fail-closed 503")
        # the process is up, but not ready without its store
        assert httpx.get(gw.url + "/healthz").status_code == 200
        assert httpx.get(gw.url + "/readyz").status_code == 503
    finally:
        store.stop()


def test_budget_overshoot_stays_bounded_under_concurrent_load(clean_fakes: Fakes, redis_server: RedisServer,
                                                              gateway_factory: Any) -> None:
    cfg = base_config(redis_server.url, [model_entry("chat", clean_fakes.params("openai"), id="oa")])
    gws = [gateway_factory(cfg) for _ in range(3)]
    budget = Decimal("0.0002")
    outcomes: list[str] = []

    def one(i: int) -> None:
        try:
            client(gws[i % 3]).chat.completions.create(
                model="chat", messages=PROMPT, max_tokens=100,
                extra_headers={"X-Task-Id": "budgeted", "X-Task-Budget-USD": str(budget)})
            outcomes.append("ok")
        except openai.RateLimitError as exc:
            assert exc.code == "budget_exceeded" and "task budget of task 'budgeted'" in exc.message
            outcomes.append("over")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(64)))
    assert "ok" in outcomes and "over" in outcomes
    wait_for(lambda: task(gws[0], "budgeted")["requests"] == outcomes.count("ok"), what="records")
    t = task(gws[0], "budgeted")
    assert t["cost_picousd"] <= budget * PICO, "reservations keep spend within the budget"
    r = redis.Redis.from_url(cfg["store"]["url"])
    assert r.hget(for_tenant("default").task("budgeted"), "reserved_pusd") in (b"0", None), "every reservation was released"


def test_idle_tasks_are_swept_exactly_once_across_replicas(clean_fakes: Fakes, redis_server: RedisServer,
                                                           gateway_factory: Any) -> None:
    cfg = base_config(redis_server.url, [model_entry("chat", clean_fakes.params("openai"))],
                      tasks={"idle_timeout_s": 1, "sweep_interval_s": 0.2, "types": {"sweepme": {}}})
    gws = [gateway_factory(cfg) for _ in range(3)]
    ids = [f"idle-{i}-{time.time_ns()}" for i in range(12)]
    for i, tid in enumerate(ids):
        client(gws[i % 3]).chat.completions.create(model="chat", messages=PROMPT,
                                                   extra_headers={"X-Task-Id": tid, "X-Task-Type": "sweepme"})
    wait_for(lambda: all(task(gws[0], tid)["status"] == "abandoned" for tid in ids), timeout=10, what="sweep")

    def abandoned(gw: Any) -> float:
        text = httpx.get(gw.url + "/metrics").text
        m = re.search(r'taskgate_tasks_total\{outcome="abandoned",task_type="sweepme"\} (\S+)', text)
        return float(m.group(1)) if m else 0.0

    time.sleep(1)  # let every replica sweep a few more times
    assert sum(abandoned(gw) for gw in gws) == len(ids)
    statuses = httpx.get(gws[0].url + "/v1/tasks", params={"task_type": "sweepme", "limit": 50}).json()["data"]
    assert {t["task_id"] for t in statuses if t["status"] == "abandoned"} >= set(ids)


def test_tenants_see_only_their_own_tasks(clean_fakes: Fakes, redis_server: RedisServer,
                                          gateway_factory: Any) -> None:
    cfg = base_config(redis_server.url, [model_entry("chat", clean_fakes.params("openai"))],
                      auth={"keys": [{"key": "key-tenant-a", "tenant": "a"}, {"key": "key-tenant-b", "tenant": "b"}]})
    gw = gateway_factory(cfg)
    client(gw, "key-tenant-a").chat.completions.create(model="chat", messages=PROMPT,
                                                       extra_headers={"X-Task-Id": "a-secret-job"})
    assert task(gw, "a-secret-job", "key-tenant-a")["requests"] == 1
    hidden = httpx.get(f"{gw.url}/v1/tasks/a-secret-job", headers={"authorization": "Bearer key-tenant-b"})
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "task_not_found"
    done = httpx.post(f"{gw.url}/v1/tasks/a-secret-job/complete", json={"outcome": "failed"},
                      headers={"authorization": "Bearer key-tenant-b"})
    assert done.status_code == 404
    listed = httpx.get(f"{gw.url}/v1/tasks", headers={"authorization": "Bearer key-tenant-b"}).json()["data"]
    assert "a-secret-job" not in {t["task_id"] for t in listed}
    other = httpx.get(f"{gw.url}/v1/tasks", params={"tenant": "a"}, headers={"authorization": "Bearer key-tenant-b"})
    assert other.status_code == 404, "only an admin may name another tenant"
    assert httpx.get(f"{gw.url}/v1/tasks/a-secret-job").status_code == 401


def test_cancelled_and_dropped_streams_are_costed(clean_fakes: Fakes, redis_server: RedisServer,
                                                  gateway_factory: Any) -> None:
    fakes = clean_fakes
    gw = gateway_factory(base_config(redis_server.url, [model_entry("chat", fakes.params("openai"), id="oa")]))
    # dropped by the upstream after two words: no usage arrived, so the cost is estimated
    fakes.openai.fail("drop")
    with pytest.raises(openai.APIError):
        list(client(gw).chat.completions.create(model="chat", messages=PROMPT, stream=True,
                                                extra_headers={"X-Task-Id": "dropped"}))
    # cancelled by the client after the first event
    fakes.openai.chunk_delay = 0.3
    try:
        body = json.dumps({"model": "chat", "messages": PROMPT, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", gw.port)) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      b"x-task-id: cancelled\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            data = b""
            while b"Hello" not in data:  # the first content word, after the role chunk
                data += s.recv(4096)
        wait_for(lambda: fakes.openai.disconnects == 1, what="upstream closed")
    finally:
        fakes.openai.chunk_delay = 0.0
    for tid, outcome in (("dropped", "dropped"), ("cancelled", "cancelled")):
        wait_for(lambda: task(gw, tid).get("attempts") == 1, what=f"{tid} record")
        t = httpx.get(f"{gw.url}/v1/tasks/{tid}", params={"include": "attempts"}).json()
        (attempt,) = t["attempt_records"]
        assert attempt["outcome"] == outcome and attempt["cost_source"] == "estimated"
        assert t["estimated_attempts"] == 1 and t["output_tokens"] > 0 and t["cost_picousd"] > 0, t
    assert task(gw, "cancelled")["waste_by_reason"]["cancelled"] > 0
