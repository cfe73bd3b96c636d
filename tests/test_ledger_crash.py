"""Real gateway processes: hostile task ids, and SIGKILL of one of three replicas under load,
reconciled against what the fake provider billed."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import Fakes, base_config, model_entry
from tests.test_ledger_faults import wait_for


def post(gw: Any, key: str, task_id: str, text: str = "hello") -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}", "x-task-id": task_id},
                      json={"model": "chat", "messages": [{"role": "user", "content": text}]})


def test_hostile_task_ids_cost_the_hostile_tenant_and_lose_nobody_else_a_record(
        clean_fakes: Fakes, redis_server: Any, gateway_factory: Any) -> None:
    fakes = clean_fakes
    cfg = base_config(redis_server.url, [model_entry("chat", fakes.params("openai"), id="oa")],
                      auth={"keys": [{"key": "sk-mallory-1", "tenant": "mallory"},
                                     {"key": "sk-honest-12", "tenant": "honest"}]})
    gw = gateway_factory(cfg)
    ids = ["poison", "poison:attempts", "poison:att", "tasks", "poison:x:y"]

    def hostile(i: int) -> int:
        return post(gw, "sk-mallory-1", ids[i % len(ids)]).status_code

    def honest(i: int) -> int:
        return post(gw, "sk-honest-12", f"job-{i % 5}").status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(hostile, range(60))) + list(pool.map(honest, range(150)))
    assert set(statuses) == {200}
    headers = {"authorization": "Bearer sk-honest-12"}
    wait_for(lambda: sum(httpx.get(f"{gw.url}/v1/tasks/job-{j}", headers=headers).json().get("requests", 0)
                         for j in range(5)) == 150, what="every honest record")
    mallory = {"authorization": "Bearer sk-mallory-1"}
    per_id = {i: httpx.get(f"{gw.url}/v1/tasks/{i}", headers=mallory) for i in ids}
    assert all(r.status_code == 200 for r in per_id.values()), {i: r.text for i, r in per_id.items()}
    assert sum(r.json()["requests"] for r in per_id.values()) == 60, "the poisoner pays for every request"
    assert all(r.headers["content-type"].startswith("application/json") for r in per_id.values())
    print("\nhostile ids: 60 hostile + 150 honest requests, all 210 recorded")


def test_sigkill_of_one_replica_loses_no_billed_request(clean_fakes: Fakes, redis_server: Any,
                                                         gateway_factory: Any) -> None:
    fakes = clean_fakes
    fakes.openai.delay = 3.0  # requests stay in flight long enough to be killed
    cfg = base_config(redis_server.url, [model_entry("chat", fakes.params("openai"), id="oa")],
                      tasks={"intent_lease_s": 5, "sweep_interval_s": 1})
    gws = [gateway_factory(cfg) for _ in range(3)]
    answered: dict[str, int] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        task = f"crash-{i}"
        try:
            r = post(gws[i % 3], "x", task, text=f"task {task}")
            with lock:
                answered[task] = r.status_code
        except httpx.HTTPError:
            pass

    with ThreadPoolExecutor(45) as pool:
        futures = [pool.submit(one, i) for i in range(45)]
        # the kill comes once every request is waiting at the provider (a condition, not a guess:
        # on a loaded machine 45 requests take a while to reach it), and before any is answered
        wait_for(lambda: len(fakes.openai.requests) >= 45, timeout=2.5, what="all 45 requests at the provider")
        gws[0].proc.send_signal(signal.SIGKILL)
        gws[0].proc.wait(10)
        for f in futures:
            f.result()
    billed = {m.group(1) for r in fakes.openai.requests
              if (m := re.search(r"task (crash-\d+)", json.dumps(r.get("body", r))))}
    assert len(billed) == 45, "the provider received (and billed) every request"
    served = {t for t, s in answered.items() if s == 200}

    def recorded() -> dict[str, dict[str, Any]]:
        out = {}
        for i in range(45):
            r = httpx.get(f"{gws[1].url}/v1/tasks/crash-{i}", timeout=10)
            if r.status_code == 200:
                out[f"crash-{i}"] = r.json()
        return out

    wait_for(lambda: billed <= set(recorded()), timeout=30, what="every billed request in the ledger")
    tasks = recorded()
    exact = {t for t, v in tasks.items() if v["attempts"] and not v["estimated_attempts"]}
    interrupted = set(tasks) - exact
    assert served <= exact, "every response a client received is recorded exactly"
    assert all(v.get("reserved_picousd", 0) == 0 for v in tasks.values()), "no reservation outlives its lease"
    print(f"\nSIGKILL of 1 of 3 replicas: billed {len(billed)}, served {len(served)}, "
          f"recorded {len(tasks)} ({len(exact)} exact, {len(interrupted)} interrupted estimates)")
