"""`taskgate quote` and `taskgate report --by model` against a live `taskgate serve`, and
`POST /v1/tasks` with a budget over real HTTP with the official openai SDK as the client."""

from __future__ import annotations

import csv
import io
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from tests.conftest import Fakes, GatewayProcess, base_config, model_entry
from tests.test_cli_tasks import cli, ok

RUN = uuid.uuid4().hex[:8]
TRIAGE = f"triage-{RUN}"
KEY, TENANT = "sk-quotes-key-1", f"quotes-{RUN}"
PRICES = {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07}


class Live:
    def __init__(self, gw: GatewayProcess) -> None:
        self.gw = gw
        self.api = httpx.Client(base_url=gw.url, timeout=10, headers={"Authorization": f"Bearer {KEY}"})
        self.sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0)

    def chat(self, task_id: str) -> None:
        self.sdk.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "triage this"}],
                                         extra_headers={"X-Task-Id": task_id, "X-Task-Type": TRIAGE})


@pytest.fixture(scope="module")
def live(fakes: Fakes, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    fakes.reset()
    models = [model_entry("assistant", {**fakes.params("openai"), **PRICES}, id="primary"),
              model_entry("assistant", {**fakes.params("vllm"), **PRICES}, id="backup")]
    config = base_config(redis_server.url, models, tasks={"types": {TRIAGE: {"price_usd": 0.05}}},
                         quotes={"min_ended": 4, "min_succeeded": 2, "resamples": 200},
                         auth={"keys": [{"key": KEY, "tenant": TENANT}]})
    gw = GatewayProcess(config, Path(tmp_path_factory.mktemp("quotes-gw"))).start()
    try:
        live = Live(gw)
        for i, outcome in enumerate(("succeeded", "succeeded", "failed", "succeeded", "abandoned")):
            if i == 3:
                fakes.openai.fail("503")  # this one falls back to the backup: another model path
            live.chat(f"q{i}-{RUN}")
            r = live.api.post(f"/v1/tasks/q{i}-{RUN}/complete", json={"outcome": outcome})
            assert r.status_code == 200, r.text
        yield live
    finally:
        gw.stop()
        fakes.reset()


def test_quote_cli_agrees_with_the_api(live: Live) -> None:
    api = live.api.get("/v1/quotes", params={"task_type": TRIAGE}).json()
    assert api["enough_history"] is True and api["sample"]["ended"] == 5 and api["sample"]["succeeded"] == 3
    shown = json.loads(ok(cli("quote", TRIAGE, "--json", url=live.gw.url, key=KEY)))
    for field in ("sample", "expected_cost_per_success_usd", "interval", "cost_per_job_usd", "suggested_price_usd",
                  "by_model_path"):
        assert shown[field] == api[field], field
    paths = {r["model_path"] for r in api["by_model_path"]}
    assert paths == {"assistant@primary", "assistant@backup + assistant@primary"}
    text = ok(cli("quote", TRIAGE, "--margin", "0.5", url=live.gw.url, key=KEY))
    price = (Decimal(api["expected_cost_per_success_usd"]) * 2).quantize(Decimal("1e-12"))
    assert "suggested price per job at margin 0.5" in text and f"${str(price).rstrip('0')}" in text
    assert "percentile bootstrap" in text and "assistant@backup + assistant@primary" in text
    other = live.api.get("/v1/quotes", params={"task_type": TRIAGE, "tenant": "someone-else"})
    assert other.status_code == 404  # a tenant sees its own history only (admins may name another)
    thin = ok(cli("quote", f"unknown-{RUN}", url=live.gw.url, key=KEY))
    assert "not enough history" in thin
    bad = cli("quote", TRIAGE, "--margin", "2", url=live.gw.url, key=KEY)
    assert bad.returncode == 1 and "margin" in bad.stderr and "Traceback" not in bad.stderr


def test_report_by_model_in_every_format(live: Live) -> None:
    api = live.api.get("/v1/reports/tasks", params={"by": "model"}).json()
    rows = {r["model_path"]: r for r in api["data"]}
    assert rows["assistant@primary"]["jobs"] == 4 and rows["assistant@primary"]["succeeded"] == 2
    assert rows["assistant@backup + assistant@primary"]["succeeded"] == 1
    shown = json.loads(ok(cli("report", "--by", "model", "--format", "json", url=live.gw.url, key=KEY)))
    assert shown["data"] == api["data"]
    table = list(csv.reader(io.StringIO(ok(cli("report", "--by", "model", "--format", "csv",
                                                 url=live.gw.url, key=KEY)))))
    header, body = table[0], [dict(zip(table[0], r)) for r in table[1:]]
    assert "cost_per_succeeded_job_usd" in header and len(body) == 2
    for row in body:
        want = rows[row["model_path"]]
        assert Decimal(row["cost_per_succeeded_job_usd"]) == Decimal(want["cost_per_succeeded_job_usd"])
        assert Decimal(row["margin_usd"]) == Decimal(want["margin_usd"]) and row["price_usd"] == "0.05"
    text = ok(cli("report", "--by", "model", url=live.gw.url, key=KEY))
    assert "cost per succeeded job by model path" in text and "assistant@primary" in text


def test_open_task_budget_over_http(live: Live) -> None:
    r = live.api.post("/v1/tasks", json={"task_type": TRIAGE, "max_cost_usd": "0.0000000001"})
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["quote"]["enough_history"] is True and task["quote"]["suggested_price_usd"]
    with pytest.raises(openai.RateLimitError) as info:
        live.chat(task["task_id"])
    assert info.value.code == "budget_exceeded"
    roomy = live.api.post("/v1/tasks", json={"task_type": TRIAGE, "max_cost_usd": 1}).json()
    live.chat(roomy["task_id"])
    assert live.api.get(f"/v1/tasks/{roomy['task_id']}").json()["requests"] == 1
