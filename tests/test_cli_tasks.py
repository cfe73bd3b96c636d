"""The ledger CLI (`taskgate tasks`, `tasks show`, `tasks complete`, `report`) against a live gateway.

Traffic goes through the official openai SDK to a real `taskgate serve`; the
CLI runs as a subprocess and its output is checked against the tasks API.
"""

from __future__ import annotations

import csv
import functools
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

from gateway.accounting.pricing import format_usd
from gateway.cli import tasks as cli_tasks
from gateway.cli.client import Client
from gateway.cli.main import main
from gateway.cli.tasks import CSV_HEADER, fmt_usd, parse_when, plain
from tests.conftest import ROOT, Fakes, GatewayProcess, base_config, model_entry

RUN = uuid.uuid4().hex[:8]
TRIAGE = f"triage-{RUN}"  # unique per run: the session's Redis is shared with other test files
OTHER = f"summarise-{RUN}"
SCIENTIFIC = re.compile(r"\d[eE][-+]\d")  # Python always writes the sign: 1e-05
PRICES = {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07}


TEAM_KEY, ADMIN_KEY = "sk-team-key-1", "sk-admin-key-1"
TEAM, ADMIN = f"team-{RUN}", f"ops-{RUN}"  # tenants of their own: nothing else in the shared Redis shows up


def cli(*args: str, url: str | None = None, key: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m gateway ...`; `url` and `key` go in through the environment, as a user's shell would."""
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
        self.api = httpx.Client(base_url=gw.url, timeout=10, headers={"Authorization": f"Bearer {TEAM_KEY}"})
        self.won, self.lost, self.running = (f"{name}-{RUN}" for name in ("won", "lost", "running"))

    def cli(self, *args: str, key: str | None = TEAM_KEY) -> subprocess.CompletedProcess[str]:
        return cli(*args, url=self.gw.url, key=key)

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.api.get(f"/v1/tasks/{task_id}", params={"include": "attempts"})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def traffic(fakes: Fakes, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    """One gateway for the module, with auth: an OpenAI deployment with a vLLM fallback, three tasks."""
    fakes.reset()
    models = [model_entry("assistant", {**fakes.params("openai"), **PRICES}, id="primary"),
              model_entry("assistant", {**fakes.params("vllm"), **PRICES}, id="backup")]
    config = base_config(redis_server.url, models, tasks={"types": {TRIAGE: {"price_usd": 0.05}}},
                         auth={"keys": [{"key": TEAM_KEY, "tenant": TEAM},
                                        {"key": ADMIN_KEY, "tenant": ADMIN, "admin": True}]})
    gw = GatewayProcess(config, Path(tmp_path_factory.mktemp("cli-gw"))).start()
    try:
        t = Traffic(gw)
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=TEAM_KEY, max_retries=0)
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
    # --url and --key as options here; everywhere else from $TASKGATE_URL and $TASKGATE_API_KEY
    out = ok(cli("tasks", "complete", traffic.lost, "--outcome", "failed", "--url", traffic.gw.url, "--key", TEAM_KEY))
    task = traffic.task(traffic.lost)
    assert task["status"] == "failed"
    assert out.strip() == f"task {traffic.lost}: failed, 1 request(s), cost ${format_usd(task['cost_picousd'])}"
    again = traffic.cli("tasks", "complete", traffic.lost, "--outcome", "failed", "--json")
    assert json.loads(ok(again))["status"] == "failed"  # repeating is harmless
    conflict = one_line_error(traffic.cli("tasks", "complete", traffic.lost, "--outcome", "succeeded"))
    assert f"task '{traffic.lost}' already ended as 'failed'" in conflict and "409" in conflict


def test_tasks_lists_recent_tasks_with_filters(traffic: Traffic) -> None:
    out = ok(traffic.cli("tasks", "--type", TRIAGE, "--since", "10m"))
    assert traffic.won in out and traffic.lost in out and traffic.running not in out
    won = traffic.task(traffic.won)
    row = next(line for line in out.splitlines() if traffic.won in line)
    assert row.split()[1:4] == [TRIAGE, "succeeded", "2"]
    assert f"${format_usd(won['cost_picousd'])}" in row and not SCIENTIFIC.search(row)
    assert f"{won['input_tokens']:,}" in row and f"{won['output_tokens']:,}" in row

    listed = json.loads(ok(traffic.cli("tasks", "--since", "10m", "--json", "--limit", "500")))
    ids = [t["task_id"] for t in listed["data"]]
    assert {traffic.won, traffic.lost, traffic.running} <= set(ids)
    api = traffic.api.get("/v1/tasks", params={"since": parse_when("10m"), "limit": 200}).json()
    assert ids[: len(api["data"])] == [t["task_id"] for t in api["data"]]

    newest = json.loads(ok(traffic.cli("tasks", "--type", TRIAGE, "--limit", "1", "--json")))
    assert len(newest["data"]) == 1 and newest["has_more"] is True
    running = ok(traffic.cli("tasks", "--status", "open", "--type", OTHER))
    assert traffic.running in running and "open" in running
    assert "no tasks match" in ok(traffic.cli("tasks", "--type", f"nothing-{RUN}"))


def test_show_has_the_exact_cost_and_every_attempt(traffic: Traffic) -> None:
    task = traffic.task(traffic.won)
    records = task["attempt_records"]
    assert task["attempts"] == len(records) == 3
    out = ok(traffic.cli("tasks", "show", traffic.won))
    assert re.search(rf"cost\s+\${re.escape(format_usd(task['cost_picousd']))}\s", out)
    assert not SCIENTIFIC.search(out)
    margin = format_usd(int(Decimal("0.05") * 10**12) - task["cost_picousd"])
    assert re.search(r"price\s+\$0\.05\s", out) and re.search(rf"margin\s+\${re.escape(margin)}\s", out)
    assert re.search(r"attempts 3 \(1 failed\)", out)
    breakdown = out[out.index("by model"):re.search(r"^attempts\s*$", out, re.M).start()]
    for m in task["models"]:
        line = next(line for line in breakdown.splitlines() if f" {m['deployment']} " in line)
        assert m["provider"] in line and line.rstrip().endswith(f"${format_usd(m['cost_picousd'])}")
    attempt_lines = [line for line in out.splitlines() if any(r["request_id"] in line for r in records)]
    assert len(attempt_lines) == len(records)
    for rec in records:
        line = next(line for line in attempt_lines if rec["request_id"] in line and f" {rec['deployment']} " in line)
        assert f" {rec['outcome']}" in line
        assert f"${rec['cost_usd']}" in line  # "0.0" shows as $0.00
    failed = next(line for line in attempt_lines if " error" in line)
    assert " 503 " in failed and " primary " in failed
    assert json.loads(ok(traffic.cli("tasks", "show", traffic.won, "--json"))) == task


def test_report_agrees_with_the_api_in_every_format(traffic: Traffic) -> None:
    ok(traffic.cli("tasks", "complete", traffic.lost, "--outcome", "failed"))  # whatever ran first
    api = {r["task_type"]: r for r in traffic.api.get("/v1/reports/tasks").json()["task_types"]}
    shown = json.loads(ok(traffic.cli("report", "--format", "json", "--since", "1d")))
    assert shown["object"] == "report" and shown["tenant"] == TEAM
    assert {r["task_type"]: r for r in shown["task_types"]} == api
    assert list(api) == [TRIAGE]  # the open task is not in it: reports count ended tasks

    text = ok(traffic.cli("report", "--format", "csv"))
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

    table = ok(traffic.cli("report", "--since", "2d", "--until", "0m"))
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
    missing = one_line_error(traffic.cli("tasks", "show", f"nope-{RUN}"))
    assert f"no task 'nope-{RUN}'" in missing and "404" in missing
    invalid = one_line_error(traffic.cli("tasks", "show", "bad id!"))
    assert "a task id is 1 to 128 characters" in invalid and "400" in invalid


@pytest.mark.parametrize("args", [("tasks", "--since", "yesterday"), ("tasks", "--limit", "0"),
                                  ("tasks", "complete", "x"), ("report", "--format", "xml")])
def test_usage_errors_exit_2(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*args, "--url", "http://127.0.0.1:9"])
    assert exc.value.code == 2 and "usage:" in capsys.readouterr().err


def test_with_auth_the_key_decides_what_the_cli_sees(traffic: Traffic) -> None:
    wrong = one_line_error(traffic.cli("tasks", key="sk-wrong-key"))
    assert "invalid API key" in wrong and "401" in wrong
    assert "missing API key" in one_line_error(traffic.cli("report", key=None))
    denied = one_line_error(traffic.cli("tasks", "--tenant", ADMIN))  # only an admin names another tenant
    assert "no such tenant" in denied and "404" in denied
    assert traffic.won not in ok(traffic.cli("tasks", key=ADMIN_KEY))  # the admin's own tenant has no tasks
    assert traffic.won in ok(traffic.cli("tasks", "show", traffic.won, "--tenant", TEAM, key=ADMIN_KEY))


class FakeGateway:
    """The client's transport seam: records each request and answers from a script."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, method: str, url: str, headers: Any, body: bytes | None, timeout: float) -> tuple[int, bytes]:
        self.requests.append((method, url, dict(headers)))
        status, answer = self.answers.pop(0)
        return status, answer if isinstance(answer, bytes) else json.dumps(answer).encode()


def run_with(fake: FakeGateway, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(cli_tasks, "Client", functools.partial(Client, transport=fake))
    return main([*args, "--url", "http://gw.test", "--key", "sk-k"])


def page(n: int, start: int, more: bool) -> dict[str, Any]:
    data = [{"task_id": f"t{i}", "created_at": 1000.0 - i} for i in range(start, start + n)]
    return {"object": "list", "data": data, "has_more": more, "next_before": data[-1]["created_at"] if more else None}


def test_a_limit_past_one_page_follows_the_cursor(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeGateway((200, page(200, 0, True)), (200, page(50, 200, True)))
    assert run_with(fake, monkeypatch, "tasks", "--limit", "250", "--json", "--tenant", "acme") == 0
    (_, first, headers), (_, second, _) = fake.requests
    assert first == "http://gw.test/v1/tasks?limit=200&tenant=acme"
    assert second == "http://gw.test/v1/tasks?before=801.0&limit=50&tenant=acme"
    assert headers["Authorization"] == "Bearer sk-k"
    out = json.loads(capsys.readouterr().out)
    assert len(out["data"]) == 250 and out["has_more"] is True and out["next_before"] == 751.0


@pytest.mark.parametrize("status, body, message", [
    (404, {"error": {"message": "no task 'x'", "type": "not_found_error", "param": "task_id",
                     "code": "task_not_found"}}, "taskgate: error: no task 'x' (HTTP 404, task_not_found)"),
    (502, b"<html>bad gateway</html>", "taskgate: error: HTTP 502 Bad Gateway (not a Taskgate error body)"),
    (200, b"<html>hello</html>", "taskgate: error: the server at http://gw.test did not answer JSON; "
                                 "is it a Taskgate gateway?"),
])
def test_what_answers_becomes_one_line(status: int, body: Any, message: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with(FakeGateway((status, body)), monkeypatch, "tasks", "show", "x") == 1
    assert capsys.readouterr().err == message + "\n"
