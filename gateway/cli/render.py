"""How the ledger commands print: rich tables that fit the terminal (80 columns by default, the
compact columns; ``--wide`` or a wide terminal: every column), and the report as a table or CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from rich.console import Console
    from rich.table import Table

from gateway.cli.format import (
    fmt_int,
    fmt_iso,
    fmt_ratio,
    fmt_time,
    fmt_usd,
    plain,
    to_decimal,
    usd_amount,
)

# The report's CSV columns, in order; renaming or reordering one breaks finance's imports.
CSV_HEADER = (
    "task_type", "period_start", "period_end", "tasks", "succeeded", "failed", "abandoned", "success_rate",
    "requests", "attempts", "input_tokens", "output_tokens", "cost_usd", "cost_per_succeeded_task_usd",
    "waste_usd", "waste_retry_usd", "waste_fallback_usd", "waste_cancelled_usd", "waste_failed_task_usd",
    "waste_abandoned_task_usd", "waste_ratio", "unpriced_attempts", "price_usd", "revenue_usd", "margin_usd",
    "margin_per_succeeded_task_usd",
)
WASTE_KINDS = ("retry", "fallback", "cancelled", "failed_task", "abandoned_task")


FULL_WIDTH = 120  # below this a table shows its compact columns, unless --wide


def _console(wide: bool = False) -> Console:
    """A terminal's width (80 when not a terminal and $COLUMNS is unset); --wide: at least 220."""
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    if wide and console.width < 220:
        console = Console(highlight=False, soft_wrap=False, width=220)
    return console


def _full(console: Console, args: argparse.Namespace | None = None) -> bool:
    return bool(getattr(args, "wide", False)) or console.width >= FULL_WIDTH


def _table(title: str | None = None, compact: bool = False) -> Any:
    """``compact``: two spaces between columns instead of three (80 columns hold one more)."""
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=compact)


# the most a name column takes in a compact table; a longer name ends in an ellipsis (--wide shows it whole)
_NARROW = {"task": 24, "type": 16, "task type": 18}


def _columns(table: Table, names: Iterable[str], left: Iterable[str] = (), narrow: bool = False) -> None:
    """Numbers right-aligned; a narrow terminal folds cells rather than cut an id or an amount short.
    ``narrow``: a compact table, one line a row: names are cut with an ellipsis, amounts never wrap."""
    left = set(left)
    for name in names:
        if narrow:
            table.add_column(name, justify="left" if name in left else "right", no_wrap=True,
                             overflow="ellipsis", max_width=_NARROW.get(name))
        else:
            table.add_column(name, justify="left" if name in left else "right", overflow="fold")


def _text(value: Any) -> str:
    """A value from the gateway, shown literally (a '[' in a name is not rich markup)."""
    from rich.markup import escape

    return "—" if value is None or value == "" else escape(str(value))


def exact_money(row: dict[str, Any], key: str) -> Decimal | None:
    """A money field from its exact twin (``<key>_exact``, a decimal string) when the API gave one."""
    twin = row.get(f"{key}_exact")
    return to_decimal(twin) if twin is not None else to_decimal(row.get(key))


def exact_waste(row: dict[str, Any]) -> dict[str, Any]:
    return row.get("waste_usd_exact") or row.get("waste_usd") or {}


def csv_row(row: dict[str, Any], since: float | None, until: float | None) -> list[str]:
    waste = exact_waste(row)
    money = {k: exact_money(row, k) for k in ("cost_per_succeeded_task_usd", "price_usd", "revenue_usd",
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


def print_report(rows: Sequence[dict[str, Any]], since: float | None, until: float | None,
                 wide: bool = False) -> None:
    console = _console(wide)
    full = wide or console.width >= 160
    period = f"{fmt_time(since)} → {fmt_time(until)}"
    if not rows:
        console.print(f"no tasks ended between {period}")
        return
    priced = any(r.get("price_usd") is not None for r in rows)
    if not full:
        _print_compact_report(console, rows, period, priced)
        return
    table = _table(f"tasks by type, {period}")
    columns = ["task type", "tasks", "succeeded", "failed", "abandoned", "success rate", "cost",
               "cost / succeeded", "waste", "waste ratio"]
    if priced:
        columns += ["price", "revenue", "margin", "margin / succeeded"]
    _columns(table, columns, left=("task type",))
    waste_table = _table("waste by reason")
    _columns(waste_table, ("task type", *(kind.replace("_", " ") for kind in WASTE_KINDS)), left=("task type",))
    for r in rows:
        waste = exact_waste(r)
        total = sum((to_decimal(v) or Decimal(0) for v in waste.values()), Decimal(0))
        cells = [_text(r.get("task_type")), fmt_int(r.get("tasks")), fmt_int(r.get("succeeded")),
                 fmt_int(r.get("failed")), fmt_int(r.get("abandoned")), fmt_ratio(r.get("success_rate")),
                 fmt_usd(r.get("cost_usd"), r.get("cost_picousd")) + ("*" if r.get("unpriced_attempts") else ""),
                 fmt_usd(exact_money(r, "cost_per_succeeded_task_usd")), fmt_usd(total),
                 fmt_ratio(r.get("waste_ratio"))]
        if priced:
            cells += [fmt_usd(exact_money(r, k)) for k in ("price_usd", "revenue_usd", "margin_usd",
                                                            "margin_per_succeeded_task_usd")]
        table.add_row(*cells)
        waste_table.add_row(_text(r.get("task_type")), *(fmt_usd(waste.get(k)) for k in WASTE_KINDS))
    console.print(table)
    console.print(waste_table)
    notes = ["cost / succeeded counts the cost of every ended task (failed and abandoned too)"]
    if any(r.get("unpriced_attempts") for r in rows):
        notes.append("* cost incomplete: some attempts had no price")
    console.print("; ".join(notes), style="dim")


def _print_compact_report(console: Console, rows: Sequence[dict[str, Any]], period: str, priced: bool) -> None:
    """The report at 80 columns: the outcome counts, cost per succeeded task and waste, one line a type;
    waste by reason as one line per type (only the reasons that cost something)."""
    table = _table(f"tasks by type, {period}", compact=True)
    columns = ["task type", "ok", "failed", "abandoned", "cost / ok", "waste"]
    if priced:
        columns.append("margin / ok")
    _columns(table, columns, left=("task type",), narrow=True)
    lines = []
    for r in rows:
        waste = exact_waste(r)
        total = sum((to_decimal(v) or Decimal(0) for v in waste.values()), Decimal(0))
        cells = [_text(r.get("task_type")), fmt_int(r.get("succeeded")), fmt_int(r.get("failed")),
                 fmt_int(r.get("abandoned")), fmt_usd(r.get("cost_per_succeeded_task_usd")),
                 f"{fmt_usd(total)} {fmt_ratio(r.get('waste_ratio'))}"]
        if priced:
            cells.append(fmt_usd(r.get("margin_per_succeeded_task_usd")))
        table.add_row(*cells)
        spent = [f"{kind.replace('_', ' ')} {fmt_usd(waste.get(kind))}" for kind in WASTE_KINDS
                 if to_decimal(waste.get(kind))]
        if spent:
            lines.append(f"  {_text(r.get('task_type'))}: " + ", ".join(spent))
    console.print(table)
    if lines:
        console.print("waste by reason")
        for line in lines:
            console.print(line, overflow="fold")
    console.print("ok = succeeded; cost / ok counts the cost of every ended task (failed and abandoned too); "
                  "--wide: every column", style="dim")


def print_actor_report(rows: Sequence[dict[str, Any]], since: float | None, until: float | None) -> None:
    """``taskgate report --by actor``: per person's key and per agent, tasks and cost per succeeded task."""
    table = _table("Tasks by actor: each person's key, and each agent acting for one")
    _columns(table, ["person", "actor", "agent", "tasks", "succeeded", "cost", "cost / succeeded"],
             left=["person", "actor", "agent"])
    for r in rows:
        table.add_row(_text(r.get("person") or "(config key)"), _text(r.get("actor")), _text(r.get("agent") or "-"),
                      str(r.get("tasks", 0)), str(r.get("succeeded", 0)),
                      fmt_usd(r.get("cost_usd_exact"), r.get("cost_picousd")),
                      fmt_usd(r.get("cost_per_succeeded_task_usd_exact")) if r.get("succeeded") else "-")
    _console().print(table)
