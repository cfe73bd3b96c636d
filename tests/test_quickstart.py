"""The quick start answers: from any directory, the packaged default config serves the built-in
``demo`` model (a deterministic test double) with a demo price; one request gives a priced answer;
``taskgate demo`` fills the dashboard, the report and /metrics; ``taskgate init`` writes a starter config."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from providers import demo
from tests.conftest import ROOT, free_port
from tests.procs import ManagedProcess, http_status

DEMO_IN, DEMO_OUT = Decimal("0.000001"), Decimal("0.000002")  # config/gateway.yaml's demo price


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TASKGATE_CONFIG", "TASKGATE_STORE_URL")}
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60)


def test_the_packaged_default_is_the_repository_default() -> None:
    assert (ROOT / "gateway/config/default.yaml").read_bytes() == (ROOT / "config/gateway.yaml").read_bytes()


def test_check_finds_the_packaged_default_from_any_directory(tmp_path: Path) -> None:
    out = cli("check", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "gateway/config/default.yaml" in out.stdout and "demo: demo/taskgate-demo" in out.stdout


def test_init_writes_a_starter_config_and_never_overwrites(tmp_path: Path) -> None:
    out = cli("init", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    written = tmp_path / "taskgate.yaml"
    assert written.read_bytes() == (ROOT / "config/gateway.yaml").read_bytes()
    again = cli("init", cwd=tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr
    checked = cli("check", cwd=tmp_path)  # taskgate.yaml in the current directory is found
    assert checked.returncode == 0 and "taskgate.yaml" in checked.stdout


def test_the_demo_answer_is_deterministic_and_honours_its_parameters() -> None:
    body = {"model": "demo", "messages": [{"role": "user", "content": "Hello"}]}
    assert demo.completion(body)["choices"] == demo.completion(body)["choices"]
    text, finish, _, completion = demo.answer({**body, "max_tokens": 3})
    assert (len(text.split()), finish, completion) == (3, "length", 3)
    text, finish, _, _ = demo.answer({**body, "stop": ["double"]})
    assert "double" not in text and text.endswith("deterministic test ")
    assert "test double" in demo.LABEL  # it says what it is


@pytest.fixture
def default_gateway(tmp_path: Path) -> Iterator[str]:
    """`taskgate serve` with no --config, from a directory that has none: the packaged default, embedded store."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TASKGATE_CONFIG", "TASKGATE_STORE_URL")}
    proc = ManagedProcess("gateway", [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
                          tmp_path / "serve.log", cwd=tmp_path)
    proc.env = env
    proc.start(http_status(f"http://127.0.0.1:{port}/readyz"), timeout=30)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def test_one_request_gives_a_priced_answer_and_demo_fills_the_dashboard(default_gateway: str,
                                                                         tmp_path: Path) -> None:
    url = default_gateway
    with httpx.Client(base_url=url, timeout=20) as client:
        r = client.post("/v1/chat/completions", headers={"X-Task-Id": "first-task"},
                        json={"model": "demo", "messages": [{"role": "user", "content": "Hello, Taskgate"}]})
        assert r.status_code == 200, r.text
        usage = r.json()["usage"]
        assert "test double" in r.json()["choices"][0]["message"]["content"]
        expected = DEMO_IN * usage["prompt_tokens"] + DEMO_OUT * usage["completion_tokens"]
        assert Decimal(r.headers["x-request-cost-usd"]) == expected > 0
        with client.stream("POST", "/v1/chat/completions", json={
                "model": "demo", "stream": True, "messages": [{"role": "user", "content": "Hello"}]}) as s:
            lines = [line for line in s.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]" and len(lines) > 5

        out = cli("demo", "--url", url, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        for outcome in ("succeeded", "failed", "abandoned"):
            assert outcome in out.stdout
        rows = {row["task_type"]: row for row in client.get("/v1/reports/tasks").json()["task_types"]}
        assert (rows["ticket-triage"]["succeeded"], rows["research"]["succeeded"]) == (3, 1)
        assert (rows["research"]["failed"], rows["research"]["abandoned"]) == (1, 1)
        assert Decimal(str(rows["research"]["cost_usd"])) > 0
        tasks = client.get("/v1/tasks", params={"limit": 50}).json()["data"]
        assert len(tasks) == 7  # six demo tasks and "first-task" (a one-request task is not listed)
        flaky = next(t for t in tasks if t["task_id"].endswith("-3"))
        assert flaky["status"] == "succeeded" and flaky["failed_attempts"] == 1  # retried, then answered
        metrics = client.get("/metrics").text
        assert 'outcome="abandoned"' in metrics and 'provider="demo"' in metrics
        assert client.get("/ui").status_code == 200
