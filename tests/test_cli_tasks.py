"""The ledger CLI (`taskgate tasks`, `tasks show`, `tasks complete`, `report`) against a live gateway.

Traffic goes through the official openai SDK to a real `taskgate serve`; the
CLI runs as a subprocess and its output is checked against the tasks API.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from gateway.cli_tasks import CSV_HEADER, fmt_usd, parse_when, plain
from gateway.pricing import format_usd
from tests.conftest import ROOT, Fakes, GatewayProcess, base_config, model_entry

RUN = uuid.uuid4().hex[:8]
TRIAGE = f"triage-{RUN}"  # unique per run: the session's Redis is shared with other test files
OTHER = f"summarise-{RUN}"
SCIENTIFIC = re.compile(r"\d[eE][-+]\d")  # Python always writes the sign: 1e-05
PRICES = {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07}


def cli(*args: str, url: str | None = None, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    env["COLUMNS"] = "200"
    if url:
        env["TASKGATE_URL"] = url
    if key:
        env["TASKGATE_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def chat(client: openai.OpenAI, task_id: str, task_type: str) -> None:
    client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "triage this ticket"}],
                                   extra_headers={"X-Task-Id": task_id, "X-Task-Type": task_type})


class Traffic:
    def __init__(self, gw: GatewayProcess) -> None:
        self.gw = gw
        self.api = httpx.Client(base_url=gw.url, timeout=10)
        self.won, self.lost, self.running = (f"{name}-{RUN}" for name in ("won", "lost", "running"))

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.api.get(f"/v1/tasks/{task_id}", params={"include": "attempts"})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def traffic(fakes: Fakes, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    """One gateway for the module: an OpenAI deployment with a vLLM fallback, three tasks."""
    fakes.reset()
    models = [model_entry("assistant", {**fakes.params("openai"), **PRICES}, id="primary"),
              model_entry("assistant", {**fakes.params("vllm"), **PRICES}, id="backup")]
    config = base_config(redis_server.url, models, tasks={"types": {TRIAGE: {"price_usd": 0.05}}})
    gw = GatewayProcess(config, Path(tmp_path_factory.mktemp("cli-gw"))).start()
    try:
        t = Traffic(gw)
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        chat(client, t.won, TRIAGE)
        fakes.openai.fail("503")  # the second request fails over to the backup: 3 attempts in all
        chat(client, t.won, TRIAGE)
        chat(client, t.lost, TRIAGE)
        chat(client, t.running, OTHER)
        assert t.api.post(f"/v1/tasks/{t.won}/complete", json={"outcome": "succeeded"}).status_code == 200
        yield t
    finally:
        gw.stop()
        fakes.reset()


def test_complete_ends_a_task_and_prints_its_cost(traffic: Traffic) -> None:
    out = ok(cli("tasks", "complete", traffic.lost, "--outcome", "failed", "--url", traffic.gw.url))
    task = traffic.task(traffic.lost)
    assert task["status"] == "failed"
    assert out.strip() == f"task {traffic.lost}: failed, 1 request(s), cost ${format_usd(task['cost_picousd'])}"
    again = cli("tasks", "complete", traffic.lost, "--outcome", "failed", "--json", url=traffic.gw.url)
    assert json.loads(ok(again))["status"] == "failed"  # repeating is harmless
    conflict = one_line_error(cli("tasks", "complete", traffic.lost, "--outcome", "succeeded", url=traffic.gw.url))
    assert f"task '{traffic.lost}' already ended as 'failed'" in conflict and "409" in conflict


def test_tasks_lists_recent_tasks_with_filters(traffic: Traffic) -> None:
    out = ok(cli("tasks", "--type", TRIAGE, "--since", "10m", url=traffic.gw.url))
    assert traffic.won in out and traffic.lost in out and traffic.running not in out
    won = traffic.task(traffic.won)
    row = next(line for line in out.splitlines() if traffic.won in line)
    assert row.split()[1:4] == [TRIAGE, "succeeded", "2"]
    assert f"${format_usd(won['cost_picousd'])}" in row and not SCIENTIFIC.search(row)
    assert f"{won['input_tokens']:,}" in row and f"{won['output_tokens']:,}" in row

    listed = json.loads(ok(cli("tasks", "--since", "10m", "--json", "--limit", "500", url=traffic.gw.url)))
    ids = [t["task_id"] for t in listed["data"]]
    assert {traffic.won, traffic.lost, traffic.running} <= set(ids)
    api = httpx.get(f"{traffic.gw.url}/v1/tasks", params={"since": parse_when("10m"), "limit": 200}).json()
    assert ids[: len(api["data"])] == [t["task_id"] for t in api["data"]]

    newest = json.loads(ok(cli("tasks", "--type", TRIAGE, "--limit", "1", "--json", url=traffic.gw.url)))
    assert len(newest["data"]) == 1 and newest["has_more"] is True
    running = ok(cli("tasks", "--status", "open", "--type", OTHER, url=traffic.gw.url))
    assert traffic.running in running and "open" in running
    assert "no tasks match" in ok(cli("tasks", "--type", f"nothing-{RUN}", url=traffic.gw.url))


def test_show_has_the_exact_cost_and_every_attempt(traffic: Traffic) -> None:
    task = traffic.task(traffic.won)
    records = task["attempt_records"]
    assert task["attempts"] == len(records) == 3
    out = ok(cli("tasks", "show", traffic.won, url=traffic.gw.url))
    assert f"cost      ${format_usd(task['cost_picousd'])}" in out
    assert not SCIENTIFIC.search(out)
    assert "price     $0.05" in out and f"margin    ${format_usd(int(Decimal('0.05') * 10**12) - task['cost_picousd'])}" in out
    for m in task["models"]:  # the breakdown by deployment
        line = next(line for line in out.splitlines() if f" {m['deployment']} " in line and "openai" in line
                    or f" {m['deployment']} " in line and m["provider"] in line)
        assert f"${format_usd(m['cost_picousd'])}" in line
    attempt_lines = [line for line in out.splitlines() if any(r["request_id"] in line for r in records)]
    assert len(attempt_lines) == len(records)
    for rec in records:
        line = next(line for line in attempt_lines if rec["request_id"] in line and f" {rec['deployment']} " in line)
        assert f" {rec['outcome']}" in line
        if rec["cost_usd"]:
            assert f"${rec['cost_usd']}" in line or f"${rec['cost_usd']}0" in line
    failed = next(line for line in attempt_lines if " error" in line)
    assert " 503 " in failed and " primary " in failed
    assert json.loads(ok(cli("tasks", "show", traffic.won, "--json", url=traffic.gw.url))) == task


def test_report_agrees_with_the_api_in_every_format(traffic: Traffic) -> None:
    ok(cli("tasks", "complete", traffic.lost, "--outcome", "failed", url=traffic.gw.url))  # whatever ran first
    api = {r["task_type"]: r for r in httpx.get(f"{traffic.gw.url}/v1/reports/tasks").json()["task_types"]}
    shown = json.loads(ok(cli("report", "--format", "json", "--since", "1d", url=traffic.gw.url)))
    assert shown["object"] == "report"
    assert {r["task_type"]: r for r in shown["task_types"]}[TRIAGE] == api[TRIAGE]
    assert OTHER not in api  # still open: reports count ended tasks

    text = ok(cli("report", "--format", "csv", url=traffic.gw.url))
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_HEADER
    row = dict(zip(rows[0], next(r for r in rows[1:] if r[0] == TRIAGE)))
    want = api[TRIAGE]
    assert (row["tasks"], row["succeeded"], row["failed"], row["abandoned"]) == ("2", "1", "1", "0")
    assert row["cost_usd"] == format_usd(want["cost_picousd"]).rstrip("0").rstrip(".")
    assert Decimal(row["cost_per_succeeded_task_usd"]) == Decimal(repr(want["cost_per_succeeded_task_usd"]))
    assert Decimal(row["margin_usd"]) == Decimal(repr(want["margin_usd"]))
    assert Decimal(row["waste_failed_task_usd"]) == Decimal(repr(want["waste_usd"]["failed_task"]))
    assert row["success_rate"] == "0.5" and row["price_usd"] == "0.05"
    assert not any(SCIENTIFIC.search(v) for v in row.values())

    table = ok(cli("report", "--since", "2d", "--until", "0m", url=traffic.gw.url))
    line = next(line for line in table.splitlines() if line.lstrip().startswith(TRIAGE))
    assert "50.0%" in line and f"${plain(Decimal(repr(want['margin_usd'])))}" in line
    assert "waste by reason" in table


@pytest.mark.parametrize("spec, ago", [("30m", 1800), ("24h", 86400), ("7d", 7 * 86400), ("1h30m", 5400)])
def test_durations_count_back_from_now(spec: str, ago: int) -> None:
    assert parse_when(spec, now=1_000_000.0) == 1_000_000.0 - ago


@pytest.mark.parametrize("spec, ts", [("1700000000", 1_700_000_000.0), ("2024-01-02T00:00:00Z", 1_704_153_600.0),
                                      ("2024-01-02T01:00:00+01:00", 1_704_153_600.0)])
def test_absolute_times(spec: str, ts: float) -> None:
    assert parse_when(spec) == ts


@pytest.mark.parametrize("value, pico, text", [
    (0.000235, None, "$0.000235"), (1e-12, None, "$0.000000000001"), (0.05, None, "$0.05"), (2, None, "$2.00"),
    (-0.01, None, "-$0.01"), (None, 235_000_000, "$0.000235"), (None, None, "—"),
])
def test_money_is_exact_and_never_scientific(value: Any, pico: int | None, text: str) -> None:
    assert fmt_usd(value, pico) == text


def test_errors_are_one_line_and_exit_1(traffic: Traffic) -> None:
    down = one_line_error(cli("tasks", "--url", "http://127.0.0.1:9"))
    assert down.startswith("taskgate: error: cannot reach the gateway at http://127.0.0.1:9")
    bad = one_line_error(cli("report", "--url", "not-a-url"))
    assert "invalid gateway URL 'not-a-url'" in bad
    missing = one_line_error(cli("tasks", "show", f"nope-{RUN}", url=traffic.gw.url))
    assert f"no task 'nope-{RUN}'" in missing and "404" in missing
    invalid = one_line_error(cli("tasks", "show", "bad id!", url=traffic.gw.url))
    assert "a task id is 1 to 128 characters" in invalid and "400" in invalid


@pytest.mark.parametrize("args", [("tasks", "--since", "yesterday"), ("tasks", "--limit", "0"),
                                  ("tasks", "complete", "x"), ("report", "--format", "xml")])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    proc = cli(*args, url="http://127.0.0.1:9")
    assert proc.returncode == 2 and "usage:" in proc.stderr and "Traceback" not in proc.stderr


def test_with_auth_the_key_decides_what_the_cli_sees(clean_fakes: Fakes, redis_server: Any,
                                                     gateway_factory: Any) -> None:
    team, admin = f"team-{RUN}", f"ops-{RUN}"
    config = base_config(redis_server.url, [model_entry("assistant", {**clean_fakes.params("openai"), **PRICES})],
                         auth={"keys": [{"key": "sk-team-key-1", "tenant": team},
                                        {"key": "sk-admin-key-1", "tenant": admin, "admin": True}]})
    gw = gateway_factory(config)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-team-key-1", max_retries=0)
    task_id = f"authed-{RUN}"
    chat(client, task_id, TRIAGE)

    assert task_id in ok(cli("tasks", url=gw.url, key="sk-team-key-1"))
    assert task_id in ok(cli("tasks", "show", task_id, "--url", gw.url, "--key", "sk-team-key-1"))
    wrong = one_line_error(cli("tasks", url=gw.url, key="sk-wrong-key"))
    assert "invalid API key" in wrong and "401" in wrong
    assert "missing API key" in one_line_error(cli("report", url=gw.url))
    assert "no such tenant" in one_line_error(cli("tasks", "--tenant", admin, url=gw.url, key="sk-team-key-1"))
    assert task_id not in ok(cli("tasks", url=gw.url, key="sk-admin-key-1"))  # the admin's own tenant
    assert task_id in ok(cli("tasks", "--tenant", team, url=gw.url, key="sk-admin-key-1"))
