"""The ledger commands: ``taskgate tasks``, ``tasks show``, ``tasks complete`` and ``report``.

They talk to a running gateway over HTTP (:mod:`gateway.cli.client`), never to
its store. Parsing times and formatting money are pure functions; the rest
prints with rich. Every failure ends as one line on stderr and exit code 1
(argparse's usage errors exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from gateway.cli import quotes
from gateway.cli.client import DEFAULT_URL, Client, CLIError
from gateway.cli.format import (
    _positive_int,
    _when_arg,
    fmt_ago,
    fmt_int,
    fmt_time,
    fmt_usd,
    parse_when,  # noqa: F401 - re-exported
    plain,  # noqa: F401 - re-exported
    to_decimal,
)
from gateway.cli.render import (  # noqa: F401 - CSV_HEADER, print_report and write_csv are re-exported
    CSV_HEADER,
    WASTE_KINDS,
    _columns,
    _console,
    _full,
    _table,
    _text,
    csv_row,
    print_actor_report,
    print_report,
    write_csv,
)

URL_ENV = "TASKGATE_URL"
KEY_ENV = "TASKGATE_API_KEY"
DEBUG_ENV = "TASKGATE_DEBUG"
STATUSES = ("open", "succeeded", "failed", "abandoned")
PAGE_MAX = 200  # the API's largest page
_STATUS_STYLE = {"open": "cyan", "succeeded": "green", "failed": "red", "abandoned": "yellow"}



# --- the commands ----------------------------------------------------------------

def _client(args: argparse.Namespace) -> Client:
    url = getattr(args, "url", None) or os.environ.get(URL_ENV) or DEFAULT_URL
    key = getattr(args, "key", None) or os.environ.get(KEY_ENV) or None
    return Client(url=url, key=key, tenant=getattr(args, "tenant", None) or None)


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
    console = _console(getattr(args, "wide", False))
    full = _full(console, args)
    table = _table(compact=not full)
    names = ("task", "type", "status", "requests", "tokens in", "tokens out", "cost", "waste", "age", "ended")
    _columns(table, names if full else ("task", "type", "status", "cost", "age"), left=("task", "type", "status"),
             narrow=not full)
    marks: set[str] = set()
    for t in tasks:
        mark = ("*" if t.get("unpriced_attempts") else "") + ("~" if t.get("estimated_attempts") else "")
        marks.update(mark)
        status = t.get("status") or "?"
        cells = {"task": _text(t.get("task_id")), "type": _text(t.get("task_type")),
                 "status": f"[{_STATUS_STYLE.get(status, '')}]{_text(status)}[/]",
                 "requests": fmt_int(t.get("requests")), "tokens in": fmt_int(t.get("input_tokens")),
                 "tokens out": fmt_int(t.get("output_tokens")),
                 "cost": fmt_usd(t.get("cost_usd"), t.get("cost_picousd")) + mark, "waste": fmt_usd(t.get("waste_usd")),
                 "age": fmt_ago(t.get("created_at"), now),
                 "ended": fmt_ago(t.get("ended_at"), now) if t.get("ended_at") else ""}
        table.add_row(*(cells[str(c.header)] for c in table.columns))
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
    if not full:
        notes.append("--wide: every column")
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
    if args.by == "model":
        return quotes.cmd_report_models(_client(args), args)
    if args.by == "actor":
        report = _client(args).request("GET", "/v1/reports/tasks", {"since": args.since, "until": args.until,
                                                                    "by": "actor"})
        if args.format == "table":
            print_actor_report(report.get("actors") or [], report.get("since"), report.get("until"))
        else:
            _print_json(report)
        return 0
    report = _client(args).report(since=args.since, until=args.until)
    rows = report.get("task_types") or []
    if args.format == "json":
        _print_json(report)
    elif args.format == "csv":
        write_csv(sys.stdout, rows, report.get("since"), report.get("until"))
    else:
        print_report(rows, report.get("since"), report.get("until"), wide=getattr(args, "wide", False))
    return 0


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


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    tasks.add_argument("--wide", action="store_true", default=argparse.SUPPRESS,
                       help="every column, however wide (default: what fits the terminal)")
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
    report.add_argument("--by", choices=("task_type", "actor", "model"), default="task_type",
                        help="rows per task type (default), per person's key and per agent (actor), "
                             "or per task type x model path (model)")
    report.add_argument("--wide", action="store_true", help="every column, however wide (default: what fits)")
    _common(report)
    report.set_defaults(func=_run(cmd_report))

    quote = sub.add_parser("quote", help="what a job of a type costs, with its uncertainty, and what to charge",
                           description="A quote from the history of the type's ended tasks (GET /v1/quotes).")
    quote.add_argument("task_type", metavar="TYPE", help="the task type (X-Task-Type)")
    quote.add_argument("--window", metavar="DUR", help="history window, e.g. 24h or 30d (default: quotes.window_days)")
    quote.add_argument("--margin", metavar="M", help="target margin, 0 <= M < 1 (default: from the config)")
    quote.add_argument("--json", action="store_true", default=False, help="print the API's JSON")
    _common(quote)
    quote.set_defaults(func=_run(lambda args: quotes.cmd_quote(_client(args), args)))
