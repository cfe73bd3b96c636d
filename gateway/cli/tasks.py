"""The ledger commands: ``taskgate tasks``, ``tasks show``, ``tasks complete`` and ``report``.

They talk to a running gateway over HTTP (:mod:`gateway.cli.client`), never to
its store. Parsing times and formatting money are pure functions; the rest
prints with rich. Every failure ends as one line on stderr and exit code 1
(argparse's usage errors exit 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:
    from rich.table import Table

from gateway.cli.client import DEFAULT_URL, Client, CLIError
from gateway.cli.format import (
    _positive_int,
    _when_arg,
    fmt_ago,
    fmt_int,
    fmt_iso,
    fmt_ratio,
    fmt_time,
    fmt_usd,
    parse_when,  # noqa: F401 - parse_when is re-exported
    plain,
    to_decimal,
    usd_amount,
)

URL_ENV = "TASKGATE_URL"
KEY_ENV = "TASKGATE_API_KEY"
DEBUG_ENV = "TASKGATE_DEBUG"
STATUSES = ("open", "succeeded", "failed", "abandoned")
PAGE_MAX = 200  # the API's largest page
_STATUS_STYLE = {"open": "cyan", "succeeded": "green", "failed": "red", "abandoned": "yellow"}

# The report's CSV columns, in order; renaming or reordering one breaks finance's imports.
CSV_HEADER = (
    "task_type", "period_start", "period_end", "tasks", "succeeded", "failed", "abandoned", "success_rate",
    "requests", "attempts", "input_tokens", "output_tokens", "cost_usd", "cost_per_succeeded_task_usd",
    "waste_usd", "waste_retry_usd", "waste_fallback_usd", "waste_cancelled_usd", "waste_failed_task_usd",
    "waste_abandoned_task_usd", "waste_ratio", "unpriced_attempts", "price_usd", "revenue_usd", "margin_usd",
    "margin_per_succeeded_task_usd",
)
WASTE_KINDS = ("retry", "fallback", "cancelled", "failed_task", "abandoned_task")


# --- the commands ----------------------------------------------------------------

def _client(args: argparse.Namespace) -> Client:
    url = getattr(args, "url", None) or os.environ.get(URL_ENV) or DEFAULT_URL
    key = getattr(args, "key", None) or os.environ.get(KEY_ENV) or None
    return Client(url=url, key=key, tenant=getattr(args, "tenant", None) or None)


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _table(title: str | None = None) -> Any:
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def _columns(table: Table, names: Iterable[str], left: Iterable[str] = ()) -> None:
    """Numbers right-aligned; a narrow terminal folds cells rather than cut an id or an amount short."""
    left = set(left)
    for name in names:
        table.add_column(name, justify="left" if name in left else "right", overflow="fold")


def _text(value: Any) -> str:
    """A value from the gateway, shown literally (a '[' in a name is not rich markup)."""
    from rich.markup import escape

    return "—" if value is None or value == "" else escape(str(value))


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def cmd_list(args: argparse.Namespace) -> int:
    client = _client(args)
    tasks: list[dict[str, Any]] = []
    want, before = args.limit, args.before
    page: dict[str, Any] = {"has_more": False, "next_before": None}
    while len(tasks) < want:
        page = client.list_tasks(task_type=args.task_type, status=args.status, since=args.since, until=args.until,
                                 before=before, limit=min(PAGE_MAX, want - len(tasks)))
        tasks.extend(page.get("data") or [])
        before = page.get("next_before")
        if not page.get("has_more") or before is None:
            break
    if getattr(args, "json", False):
        _print_json({"object": "list", "data": tasks, "has_more": bool(page.get("has_more")),
                     "next_before": page.get("next_before")})
        return 0
    now = time.time()
    table = _table()
    _columns(table, ("task", "type", "status", "requests", "tokens in", "tokens out", "cost", "waste", "age",
                     "ended"), left=("task", "type", "status"))
    marks: set[str] = set()
    for t in tasks:
        mark = ("*" if t.get("unpriced_attempts") else "") + ("~" if t.get("estimated_attempts") else "")
        marks.update(mark)
        status = t.get("status") or "?"
        table.add_row(_text(t.get("task_id")), _text(t.get("task_type")),
                      f"[{_STATUS_STYLE.get(status, '')}]{_text(status)}[/]",
                      fmt_int(t.get("requests")), fmt_int(t.get("input_tokens")), fmt_int(t.get("output_tokens")),
                      fmt_usd(t.get("cost_usd"), t.get("cost_picousd")) + mark, fmt_usd(t.get("waste_usd")),
                      fmt_ago(t.get("created_at"), now), fmt_ago(t.get("ended_at"), now) if t.get("ended_at") else "")
    console = _console()
    if not tasks:
        console.print("no tasks match")
        return 0
    console.print(table)
    notes = [f"{len(tasks)} task(s), newest first"]
    if "*" in marks:
        notes.append("* cost incomplete: some attempts had no price")
    if "~" in marks:
        notes.append("~ includes estimated usage")
    if page.get("has_more"):
        notes.append(f"more: --before {page.get('next_before')!r} or a larger --limit")
    console.print("; ".join(notes), style="dim")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    task = _client(args).get_task(args.task_id, attempts=True)
    if getattr(args, "json", False):
        _print_json(task)
        return 0
    from rich.panel import Panel
    from rich.table import Table

    now = time.time()
    status = task.get("status", "?")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    ended = f" at {fmt_time(task['ended_at'])} ({fmt_ago(task['ended_at'], now)})" if task.get("ended_at") else ""
    head.add_row("status", f"[{_STATUS_STYLE.get(status, '')}]{status}[/]{ended}")
    head.add_row("type", _text(task.get("task_type")))
    head.add_row("created", f"{fmt_time(task.get('created_at'))} ({fmt_ago(task.get('created_at'), now)}); "
                            f"last activity {fmt_ago(task.get('updated_at'), now)}")
    failed = task.get("failed_attempts") or 0
    head.add_row("requests", f"{fmt_int(task.get('requests'))}, attempts {fmt_int(task.get('attempts'))}"
                             + (f" ({failed} failed)" if failed else ""))
    head.add_row("tokens", " · ".join(f"{label} {fmt_int(task.get(f))}" for label, f in (
        ("in", "input_tokens"), ("out", "output_tokens"), ("cached in", "cached_input_tokens"),
        ("reasoning", "reasoning_tokens"))))
    flags = []
    if task.get("unpriced_attempts"):
        flags.append(f"[red]incomplete: {task['unpriced_attempts']} attempt(s) unpriced[/]")
    if task.get("estimated_attempts"):
        flags.append(f"[yellow]{task['estimated_attempts']} attempt(s) with estimated usage[/]")
    head.add_row("cost", " ".join([fmt_usd(task.get("cost_usd"), task.get("cost_picousd")), *flags]))
    by_reason = task.get("waste_by_reason") or {}
    reasons = " · ".join(f"{_text(r)} {fmt_usd(v)}" for r, v in by_reason.items() if to_decimal(v))
    head.add_row("waste", fmt_usd(task.get("waste_usd")) + (f" ({reasons})" if reasons else ""))
    if task.get("budget_usd") is not None:
        head.add_row("budget", fmt_usd(task["budget_usd"]))
    if task.get("price_usd") is not None:
        head.add_row("price", fmt_usd(task["price_usd"]))
        note = "" if status == "succeeded" else " (not succeeded: no revenue)"
        head.add_row("margin", fmt_usd(task.get("margin_usd")) + note)
    console = _console()
    console.print(Panel(head, title=f"task [bold]{_text(task.get('task_id'))}[/]", title_align="left", expand=False))

    models = _table("by model")
    _columns(models, ("model", "deployment", "provider", "attempts", "tokens in", "tokens out", "cached in",
                      "reasoning", "cost"), left=("model", "deployment", "provider"))
    for m in task.get("models") or []:
        models.add_row(_text(m.get("model")), _text(m.get("deployment")), _text(m.get("provider")),
                       fmt_int(m.get("attempts")), fmt_int(m.get("input_tokens")), fmt_int(m.get("output_tokens")),
                       fmt_int(m.get("cached_input_tokens")), fmt_int(m.get("reasoning_tokens")),
                       fmt_usd(m.get("cost_usd"), m.get("cost_picousd")))
    console.print(models)

    records = sorted(task.get("attempt_records") or [], key=lambda r: float(r.get("ts") or 0))
    attempts = _table("attempts")
    _columns(attempts, ("time", "request", "try", "model", "deployment", "provider", "outcome", "status",
                        "tokens in", "tokens out", "cost", "cost source", "waste", "duration"),
             left=("time", "request", "model", "deployment", "provider", "outcome", "cost source", "waste"))
    for r in records:
        outcome = r.get("outcome") or "?"
        style = "green" if outcome == "ok" else "red"
        reason = f" ({_text(r['error_reason'])})" if r.get("error_reason") else ""
        duration = f"{float(r['duration_s']):.3f}s" if r.get("duration_s") not in (None, "") else "—"
        if r.get("ttft_s") not in (None, ""):
            duration += f" (ttft {float(r['ttft_s']):.3f}s)"
        attempts.add_row(
            fmt_time(r.get("ts"), with_date=False), _text(r.get("request_id")), _text(r.get("attempt")),
            _text(r.get("model")), _text(r.get("deployment")), _text(r.get("provider")),
            f"[{style}]{_text(outcome)}[/]{reason}", _text(r.get("status") or None), fmt_int(r.get("input_tokens")),
            fmt_int(r.get("output_tokens")), fmt_usd(r.get("cost_usd")) if r.get("cost_usd") not in (None, "")
            else "—", _text(_cost_source(r)), _text(r.get("waste_reason") or " "), duration)
    console.print(attempts)
    total = task.get("attempts")
    if isinstance(total, int) and total > len(records):
        console.print(f"showing the last {len(records)} of {total} attempts", style="dim")
    return 0


def _cost_source(rec: dict[str, Any]) -> str:
    if rec.get("cost_source"):
        return str(rec["cost_source"])
    if rec.get("cost") in (None, ""):
        return "unpriced"
    return "estimated" if rec.get("usage_source") == "estimated" else "computed"


def cmd_complete(args: argparse.Namespace) -> int:
    task = _client(args).complete_task(args.task_id, args.outcome)
    if getattr(args, "json", False):
        _print_json(task)
    else:
        print(f"task {task.get('task_id')}: {task.get('status')}, {task.get('requests')} request(s), "
              f"cost {fmt_usd(task.get('cost_usd'), task.get('cost_picousd'))}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    report = _client(args).report(since=args.since, until=args.until)
    rows = report.get("task_types") or []
    if args.format == "json":
        _print_json(report)
    elif args.format == "csv":
        write_csv(sys.stdout, rows, report.get("since"), report.get("until"))
    else:
        print_report(rows, report.get("since"), report.get("until"))
    return 0


def csv_row(row: dict[str, Any], since: float | None, until: float | None) -> list[str]:
    waste = row.get("waste_usd") or {}
    money = {k: to_decimal(row.get(k)) for k in ("cost_per_succeeded_task_usd", "price_usd", "revenue_usd",
                                                   "margin_usd", "margin_per_succeeded_task_usd")}
    wastes = {k: to_decimal(waste.get(k)) for k in WASTE_KINDS}
    known = [w for w in wastes.values() if w is not None]
    values: dict[str, Any] = {
        **{k: row.get(k) for k in ("task_type", "tasks", "succeeded", "failed", "abandoned", "requests",
                                   "attempts", "input_tokens", "output_tokens", "unpriced_attempts")},
        "period_start": fmt_iso(since), "period_end": fmt_iso(until),
        "success_rate": plain(to_decimal(row.get("success_rate"))),
        "waste_ratio": plain(to_decimal(row.get("waste_ratio"))),
        "cost_usd": plain(usd_amount(row.get("cost_usd"), row.get("cost_picousd"))),
        "waste_usd": plain(sum(known, Decimal(0))) if known else "",
        **{f"waste_{k}_usd": plain(v) for k, v in wastes.items()},
        **{k: plain(v) for k, v in money.items()},
    }
    return ["" if values.get(col) is None else str(values[col]) for col in CSV_HEADER]


def write_csv(out: IO[str], rows: Iterable[dict[str, Any]], since: float | None, until: float | None) -> None:
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for row in rows:
        writer.writerow(csv_row(row, since, until))


def print_report(rows: Sequence[dict[str, Any]], since: float | None, until: float | None) -> None:
    console = _console()
    period = f"{fmt_time(since)} → {fmt_time(until)}"
    if not rows:
        console.print(f"no tasks ended between {period}")
        return
    priced = any(r.get("price_usd") is not None for r in rows)
    table = _table(f"tasks by type, {period}")
    columns = ["task type", "tasks", "succeeded", "failed", "abandoned", "success rate", "cost",
               "cost / succeeded", "waste", "waste ratio"]
    if priced:
        columns += ["price", "revenue", "margin", "margin / succeeded"]
    _columns(table, columns, left=("task type",))
    waste_table = _table("waste by reason")
    _columns(waste_table, ("task type", *(kind.replace("_", " ") for kind in WASTE_KINDS)), left=("task type",))
    for r in rows:
        waste = r.get("waste_usd") or {}
        total = sum((to_decimal(v) or Decimal(0) for v in waste.values()), Decimal(0))
        cells = [_text(r.get("task_type")), fmt_int(r.get("tasks")), fmt_int(r.get("succeeded")),
                 fmt_int(r.get("failed")), fmt_int(r.get("abandoned")), fmt_ratio(r.get("success_rate")),
                 fmt_usd(r.get("cost_usd"), r.get("cost_picousd")) + ("*" if r.get("unpriced_attempts") else ""),
                 fmt_usd(r.get("cost_per_succeeded_task_usd")), fmt_usd(total), fmt_ratio(r.get("waste_ratio"))]
        if priced:
            cells += [fmt_usd(r.get(k)) for k in ("price_usd", "revenue_usd", "margin_usd",
                                                  "margin_per_succeeded_task_usd")]
        table.add_row(*cells)
        waste_table.add_row(_text(r.get("task_type")), *(fmt_usd(waste.get(k)) for k in WASTE_KINDS))
    console.print(table)
    console.print(waste_table)
    notes = ["cost / succeeded counts the cost of every ended task (failed and abandoned too)"]
    if any(r.get("unpriced_attempts") for r in rows):
        notes.append("* cost incomplete: some attempts had no price")
    console.print("; ".join(notes), style="dim")


# --- wiring ------------------------------------------------------------------------

def _run(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """One line on stderr and exit 1 for every expected failure; never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except CLIError as exc:
            print(f"taskgate: error: {exc}", file=sys.stderr)
            return 1
        except BrokenPipeError:  # `taskgate report --format csv | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except Exception as exc:  # an answer this CLI did not expect: still one line, unless debugging
            if os.environ.get(DEBUG_ENV):
                raise
            print(f"taskgate: error: unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)",
                  file=sys.stderr)
            return 1

    return run


def _common(p: argparse.ArgumentParser) -> None:
    # SUPPRESS, so that options given before a nested subcommand are not reset by its defaults.
    g = p.add_argument_group("gateway")
    g.add_argument("--url", default=argparse.SUPPRESS,
                   help=f"the gateway's base URL (default: ${URL_ENV}, else {DEFAULT_URL})")
    g.add_argument("--key", default=argparse.SUPPRESS, help=f"API key, sent as Bearer (default: ${KEY_ENV})")
    g.add_argument("--tenant", default=argparse.SUPPRESS, help="another tenant's tasks (admin keys only)")


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Registers ``tasks`` (with ``show`` and ``complete``) and ``report`` on the top-level subparsers."""
    when = "SPEC is a duration ago (30m, 24h, 7d), an ISO date/datetime (local time unless it has an offset) " \
           "or unix seconds."
    tasks = sub.add_parser("tasks", help="list, show and complete tasks on a running gateway",
                           description="Recent tasks, newest first. " + when)
    tasks.add_argument("--type", dest="task_type", help="only tasks of this type")
    tasks.add_argument("--status", choices=STATUSES, help="only tasks with this status")
    tasks.add_argument("--since", type=_when_arg, metavar="SPEC", help="only tasks created since SPEC")
    tasks.add_argument("--until", type=_when_arg, metavar="SPEC", help="only tasks created until SPEC")
    tasks.add_argument("--before", type=float, metavar="TS", help="pagination cursor (next_before of a --json page)")
    tasks.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="at most N tasks (default 20)")
    tasks.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON")
    _common(tasks)
    tasks.set_defaults(func=_run(cmd_list))
    actions = tasks.add_subparsers(dest="action", metavar="{show,complete}")

    show = actions.add_parser("show", help="one task: totals, breakdown by model and every attempt")
    show.add_argument("task_id", metavar="ID", help="the task id (X-Task-Id)")
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON")
    _common(show)
    show.set_defaults(func=_run(cmd_show))

    complete = actions.add_parser("complete", help="end a task as succeeded, failed or abandoned")
    complete.add_argument("task_id", metavar="ID", help="the task id (X-Task-Id)")
    complete.add_argument("--outcome", required=True, choices=("succeeded", "failed", "abandoned"))
    complete.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the task's JSON")
    _common(complete)
    complete.set_defaults(func=_run(cmd_complete))

    report = sub.add_parser("report", help="cost per succeeded task, waste and margin by task type",
                            description="Tasks that ended in the period, by type (default: the last 7 days). "
                                        + when)
    report.add_argument("--since", type=_when_arg, metavar="SPEC", help="period start (default: until - 7d)")
    report.add_argument("--until", type=_when_arg, metavar="SPEC", help="period end (default: now)")
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")
    _common(report)
    report.set_defaults(func=_run(cmd_report))
