"""`taskgate tasks` and `taskgate report` fit 80 columns (one line a row); `--wide` shows every column."""

from __future__ import annotations

import argparse
import time
from typing import Any

import pytest

from gateway.cli import tasks as cli_tasks
from gateway.cli.render import print_report

NOW = time.time()
TASKS = [{"task_id": f"ticket-{i}-a-rather-long-task-identifier-0123456789", "task_type": "customer-ticket-triage",
          "status": status, "requests": 12, "input_tokens": 123456, "output_tokens": 65432, "cost_usd": "0.123456",
          "cost_picousd": 123456000000, "waste_usd": "0.001", "created_at": NOW - 3600, "ended_at": NOW - 60}
         for i, status in enumerate(("succeeded", "failed", "abandoned", "open"))]
ROWS = [{"task_type": name, "tasks": 40, "succeeded": 30, "failed": 6, "abandoned": 4, "success_rate": 0.75,
         "cost_usd": "12.345678", "cost_picousd": 12345678000000, "cost_per_succeeded_task_usd": "0.411522",
         "waste_usd": {"retry": "0.01", "fallback": "0.02", "cancelled": "0", "failed_task": "1.5",
                       "abandoned_task": "0.7"}, "waste_ratio": 0.18, "price_usd": "1.00", "revenue_usd": "30.00",
         "margin_usd": "17.65", "margin_per_succeeded_task_usd": "0.588"}
        for name in ("customer-ticket-triage", "research")]


class Stub:
    def list_tasks(self, **params: Any) -> dict[str, Any]:
        return {"object": "list", "data": TASKS, "has_more": False, "next_before": None}


def run_list(monkeypatch: pytest.MonkeyPatch, wide: bool) -> None:
    monkeypatch.setattr(cli_tasks, "_client", lambda args: Stub())
    args = argparse.Namespace(limit=20, before=None, task_type=None, status=None, since=None, until=None)
    if wide:
        args.wide = True
    cli_tasks.cmd_list(args)


@pytest.mark.parametrize("which", ["tasks", "report"])
def test_fits_80_columns_one_line_a_row(which: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    if which == "tasks":
        run_list(monkeypatch, wide=False)
    else:
        print_report(ROWS, NOW - 86400, NOW)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    if which == "tasks":
        rows = [line for line in lines if line.lstrip().startswith("ticket-")]
        assert len(rows) == len(TASKS)  # nothing folded onto a second line
        assert all("$0.123456" in row for row in rows)  # amounts are never cut
        assert [row.split()[2] for row in rows] == ["succeeded", "failed", "abandoned", "open"]
    else:
        rows = [line for line in lines if line.lstrip().startswith(("customer-", "research")) and "$" in line
                and ":" not in line]
        assert len(rows) == 2 and all("$0.411522" in row and "$0.588" in row for row in rows)  # one line a type
        assert "failed task $1.50" in out and "--wide" in out


def test_wide_shows_every_column(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    run_list(monkeypatch, wide=True)
    out = capsys.readouterr().out
    assert "tokens in" in out and "123,456" in out and TASKS[0]["task_id"] in out
    print_report(ROWS, NOW - 86400, NOW, wide=True)
    out = capsys.readouterr().out
    assert "success rate" in out and "margin / succeeded" in out
