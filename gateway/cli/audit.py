"""``taskgate audit``: the policy audit log of a running gateway (admin keys only)."""

from __future__ import annotations

import argparse

from gateway.cli.format import fmt_time
from gateway.cli.render import _columns, _console, _table, _text
from gateway.cli.tasks import _client, _common, _print_json, _run


def cmd_audit(args: argparse.Namespace) -> int:
    params = {"limit": args.limit, "tenant": args.of_tenant}
    page = _client(args).request("GET", "/v1/audit", params)
    entries = page.get("data", [])
    if args.json:
        _print_json(entries)
        return 0
    table = _table(f"Policy audit log: {len(entries)} newest entries")
    _columns(table, ["time", "tenant", "task", "model", "class", "kind", "rule", "reason"],
             left=["tenant", "task", "model", "class", "kind", "rule", "reason"])
    for e in entries:
        table.add_row(fmt_time(e.get("ts")), _text(e.get("tenant")), _text(e.get("task_id")), _text(e.get("model")),
                      _text(e.get("data_class")), _text(e.get("kind")), _text(e.get("rule")), _text(e.get("reason")))
    _console().print(table)
    return 0


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="policy denials, redactions and escalations (admin key)",
                           description="The newest entries of the gateway's policy audit log. "
                                       "Entries never contain request text.")
    audit.add_argument("--limit", type=int, default=50, help="how many entries (1-500, default 50)")
    audit.add_argument("--of-tenant", help="only this tenant's entries")
    audit.add_argument("--json", action="store_true", help="print JSON")
    _common(audit)
    audit.set_defaults(func=_run(cmd_audit))
