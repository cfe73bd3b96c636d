"""``taskgate keys create|list|show|revoke|rotate``: virtual keys, through the gateway's admin API.

Like the ledger commands, these talk to a running gateway over HTTP with an admin
key (``--key`` or ``$TASKGATE_API_KEY``), so a remote or shared store works the
same. A new key is printed once, when it is made or rotated; the gateway keeps
only its hash and can never show it again.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import Any

from gateway.cli.client import Client
from gateway.cli.format import fmt_time, fmt_usd
from gateway.cli.render import _columns, _console, _table, _text
from gateway.cli.tasks import _client, _print_json, _run


def _admin_client(args: argparse.Namespace) -> Client:
    client = _client(args)
    return Client(url=client.url, key=client.key, timeout=client.timeout)  # no ?tenant= on these calls


def _q(key_id: str) -> str:
    return urllib.parse.quote(key_id, safe="")


def _scope(rec: dict[str, Any]) -> str:
    parts = []
    if rec.get("admin"):
        parts.append("admin")
    if rec.get("models"):
        parts.append("models=" + ",".join(rec["models"]))
    for field, label in (("budget_usd", "budget $"), ("rpm", "rpm "), ("tpm", "tpm ")):
        if rec.get(field) is not None:
            parts.append(f"{label}{rec[field]}")
    return "; ".join(parts) or "all"


def _print_new(rec: dict[str, Any], verb: str) -> None:
    print(f"{verb} key {rec['id']} (tenant {rec['tenant']}"
          + (f", agent {rec['name']} of {rec['agent_of']}" if rec.get("agent_of") else "") + ")", file=sys.stderr)
    print("the key is shown this once; the gateway keeps only its hash:", file=sys.stderr)
    print(rec["key"])


def cmd_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"tenant": args.of_tenant, "name": args.name, "agent_of": args.agent_of,
                            "budget_usd": args.budget_usd, "rpm": args.rpm, "tpm": args.tpm,
                            "expires": args.expires}
    if args.models:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.admin:
        body["admin"] = True
    rec = _admin_client(args).request("POST", "/v1/keys", body={k: v for k, v in body.items() if v is not None})
    if args.json:
        _print_json(rec)
    else:
        _print_new(rec, "created")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    page = _admin_client(args).request("GET", "/v1/keys", {"tenant": args.of_tenant})
    keys = page.get("data", [])
    if args.json:
        _print_json(keys)
        return 0
    table = _table(f"Virtual keys: {len(keys)}")
    _columns(table, ["id", "tenant", "name", "agent of", "scope", "created", "expires", "revoked", "spend"],
             left=["id", "tenant", "name", "agent of", "scope"])
    for k in keys:
        table.add_row(_text(k.get("id")), _text(k.get("tenant")), _text(k.get("name")), _text(k.get("agent_of")),
                      _scope(k), fmt_time(k.get("created")), fmt_time(k.get("expires")) if k.get("expires") else "-",
                      fmt_time(k.get("revoked")) if k.get("revoked") else "-",
                      fmt_usd(k.get("spend_usd"), k.get("spend_picousd")))
    _console(getattr(args, "wide", False)).print(table)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    out = _admin_client(args).request("POST", f"/v1/keys/{_q(args.key_id)}/revoke")
    if args.json:
        _print_json(out)
    else:
        revoked = out.get("revoked_keys") or []
        print(f"revoked {', '.join(revoked)}" if revoked else f"{args.key_id} was already revoked")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    rec = _admin_client(args).request("POST", f"/v1/keys/{_q(args.key_id)}/rotate")
    if args.json:
        _print_json(rec)
    else:
        _print_new(rec, "rotated")
    return 0


def _gateway(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=argparse.SUPPRESS, help="the gateway's base URL (default: $TASKGATE_URL)")
    p.add_argument("--key", default=argparse.SUPPRESS, help="an admin API key (default: $TASKGATE_API_KEY)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="issue, list, revoke and rotate virtual keys (admin key)",
                          description="Virtual keys on a running gateway, through its admin API.")
    actions = keys.add_subparsers(dest="action", required=True, metavar="{create,list,revoke,rotate}")

    create = actions.add_parser("create", help="a new key, printed once",
                                description="A person's key (--tenant), or an agent's key acting for one "
                                            "(--agent-of KEY_ID --name NAME), never wider than its person's.")
    create.add_argument("--tenant", dest="of_tenant", help="the tenant the key belongs to")
    create.add_argument("--agent-of", metavar="KEY_ID", help="make an agent key acting for this person's key")
    create.add_argument("--name", help="a name (an agent key's agent name)")
    create.add_argument("--models", help="comma-separated public model names the key may use (default: all)")
    create.add_argument("--budget-usd", help="the key's lifetime spend cap in USD")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--expires", help="30d, 12h, an ISO 8601 time or unix seconds (default: never)")
    create.add_argument("--admin", action="store_true", help="an admin key (manages keys, sees every tenant)")
    _gateway(create)
    create.set_defaults(func=_run(cmd_create))

    listing = actions.add_parser("list", help="the keys (never the keys themselves)")
    listing.add_argument("--tenant", dest="of_tenant", help="only this tenant's keys")
    listing.add_argument("--wide", action="store_true", help="every column, however wide")
    _gateway(listing)
    listing.set_defaults(func=_run(cmd_list))

    for name, func, text in (("revoke", cmd_revoke, "revoke a key (and a person's agents' keys)"),
                             ("rotate", cmd_rotate, "a new key for the same id and scope")):
        p = actions.add_parser(name, help=text)
        p.add_argument("key_id", metavar="KEY_ID")
        _gateway(p)
        p.set_defaults(func=_run(func))
