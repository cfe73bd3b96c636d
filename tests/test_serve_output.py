"""What a person reads: `serve` says at start what it serves, the store and whether auth is on; the access
log writes one line per request; /v1/route/explain names each deployment by more than its id."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import base_config, model_entry

DEMO = {"model": "demo/taskgate-demo", "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}


def test_startup_access_log_and_explain(redis_server: Any, gateway_factory: Any) -> None:
    models = [model_entry("assistant", DEMO, id="demo-eu", region="eu", open_weight=True),
              model_entry("assistant", {**DEMO, "model": "demo/other"}, id="demo-us", region="us", open_weight=False)]
    gw = gateway_factory(base_config(redis_server.url, models), env={"TASKGATE_ACCESS_LOG": "1"})
    log = gw.log()
    assert "model assistant: demo-eu: demo/taskgate-demo [eu, open-weight]; demo-us: demo/other [us]" in log
    assert "store: redis (shared)" in log
    assert "auth: off: anyone who can reach" in log and "(access log on)" in log

    body = {"model": "assistant", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(gw.url + "/v1/chat/completions", json=body, headers={"X-Task-Id": "access-1"}, timeout=10)
    assert r.status_code == 200
    cost = r.headers["x-request-cost-usd"]
    deadline = time.monotonic() + 5
    while "task=access-1" not in gw.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = [line for line in gw.log().splitlines() if "task=access-1" in line]
    assert (f"task=access-1 model=assistant deployment=demo-eu outcome=ok status=200 cost=${cost} attempts=1 ms="
            in line)

    explained = httpx.post(gw.url + "/v1/route/explain", json=body, timeout=10).json()
    first = explained["considered"][0]
    assert (first["deployment"], first["kind"], first["upstream_model"], first["region"], first["open_weight"]) == \
        ("demo-eu", "demo", "taskgate-demo", "eu", True)
    assert explained["deployments"]["demo-us"]["region"] == "us"


def test_startup_says_auth_is_on_with_a_master_key(redis_server: Any, gateway_factory: Any) -> None:
    config = base_config(redis_server.url, [model_entry("demo", DEMO)],
                         general_settings={"master_key": "sk-1234", "allowed_ips": ["10.0.0.1"]})
    gw = gateway_factory(config)
    assert "auth: on (1 key(s))" in gw.log()
    assert "warning (security): general_settings.allowed_ips: IP allow-list not enforced" in gw.log()
    assert "access log on" not in gw.log()
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "demo", "messages": []}, timeout=10)
    assert r.status_code == 401
