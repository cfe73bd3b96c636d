"""``taskgate quote T`` and ``taskgate report --by model``: what a job of a type costs and what
to charge for it, and which model path finishes it cheapest (``GET /v1/quotes``,
``GET /v1/reports/models`` on a running gateway)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import IO, Any, Iterable

from gateway.cli.client import Client
from gateway.cli.format import fmt_int, fmt_iso, fmt_ratio, fmt_time, fmt_usd, plain, to_decimal
from gateway.cli.render import _columns, _console, _table, _text

MODEL_CSV_HEADER = ("period_start", "period_end", "task_type", "model_path", "jobs", "succeeded", "success_rate",
                    "cost_usd", "cost_per_succeeded_job_usd", "tokens_per_succeeded_job", "price_usd",
                    "margin_usd", "margin_per_succeeded_job_usd", "margin_ratio")


def cmd_quote(client: Client, args: argparse.Namespace) -> int:
    params = {"task_type": args.task_type, "window": args.window, "margin": args.margin}
    q = client.request("GET", "/v1/quotes", params)
    if args.json:
        print(json.dumps(q, indent=2, ensure_ascii=False))
        return 0
    print_quote(q)
    return 0


def print_quote(q: dict[str, Any]) -> None:
    console = _console()
    sample, interval = q.get("sample") or {}, q.get("interval") or {}
    console.print(f"[bold]{_text(q.get('task_type'))}[/bold]: {fmt_int(sample.get('ended'))} ended job(s), "
                  f"{fmt_int(sample.get('succeeded'))} succeeded ({fmt_ratio(q.get('success_rate'))}), "
                  f"{fmt_time(q.get('since'))} to {fmt_time(q.get('until'))}")
    if not q.get("enough_history"):
        console.print(f"[yellow]{_text(q.get('reason'))}[/yellow]")
        console.print(f"observed cost per succeeded job: {fmt_usd(q.get('observed_cost_per_success_usd'))} "
                      "(not a quote)")
    else:
        console.print(f"expected cost per succeeded job: [bold]{fmt_usd(q.get('expected_cost_per_success_usd'))}"
                      f"[/bold]  {int(float(interval.get('confidence', 0)) * 100)}% interval "
                      f"{fmt_usd(interval.get('low_usd'))} .. {fmt_usd(interval.get('high_usd'))} "
                      f"({_text(interval.get('method'))}, {interval.get('resamples')} resamples, "
                      f"seed {interval.get('seed')})")
        console.print(f"suggested price per job at margin {_text(q.get('margin'))}: "
                      f"[bold]{fmt_usd(q.get('suggested_price_usd'))}[/bold] "
                      f"(at the interval's upper bound: {fmt_usd(q.get('suggested_price_upper_usd'))})")
    per_job = q.get("cost_per_job_usd") or {}
    console.print("cost of one job: " + ", ".join(f"{p} {fmt_usd(per_job.get(p))}" for p in ("p50", "p90", "p99")))
    rows = q.get("by_model_path") or []
    if rows:
        table = _table("by model path")
        _columns(table, ("model path", "jobs", "success", "cost/success", "tokens/success"), left=("model path",))
        for row in rows:
            table.add_row(_text(row.get("model_path")), fmt_int(row.get("jobs")), fmt_ratio(row.get("success_rate")),
                          fmt_usd(row.get("cost_per_succeeded_job_usd")), _tokens(row.get("tokens_per_succeeded_job")))
        console.print(table)


def _tokens(value: Any) -> str:
    return "—" if value is None else f"{float(value):,.0f}"


def cmd_report_models(client: Client, args: argparse.Namespace) -> int:
    report = client.request("GET", "/v1/reports/models", {"since": args.since, "until": args.until})
    rows = report.get("data") or []
    if args.format == "json":
        print(json.dumps(report, indent=2, ensure_ascii=False))
    elif args.format == "csv":
        write_models_csv(sys.stdout, rows, report.get("since"), report.get("until"))
    else:
        console = _console(getattr(args, "wide", False))
        table = _table(f"cost per succeeded job by model path, {fmt_time(report.get('since'))} to "
                       f"{fmt_time(report.get('until'))}")
        _columns(table, ("task type", "model path", "jobs", "success", "cost/success", "tokens/success",
                         "margin/success"), left=("task type", "model path"))
        for row in rows:
            table.add_row(_text(row.get("task_type")), _text(row.get("model_path")), fmt_int(row.get("jobs")),
                          fmt_ratio(row.get("success_rate")), fmt_usd(row.get("cost_per_succeeded_job_usd")),
                          _tokens(row.get("tokens_per_succeeded_job")),
                          fmt_usd(row.get("margin_per_succeeded_job_usd")))
        if not rows:
            console.print("no ended tasks in the period")
        else:
            console.print(table)
    return 0


def write_models_csv(out: IO[str], rows: Iterable[dict[str, Any]], since: float | None,
                     until: float | None) -> None:
    writer = csv.writer(out)
    writer.writerow(MODEL_CSV_HEADER)
    for row in rows:
        values = {**row, "period_start": fmt_iso(since), "period_end": fmt_iso(until),
                  "success_rate": plain(to_decimal(row.get("success_rate"))),
                  "tokens_per_succeeded_job": plain(to_decimal(row.get("tokens_per_succeeded_job")))}
        writer.writerow(["" if values.get(c) is None else str(values[c]) for c in MODEL_CSV_HEADER])
