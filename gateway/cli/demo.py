"""``taskgate demo`` and ``taskgate init``: see what the product is for within a minute.

``demo`` sends a handful of sample tasks to a running gateway's ``demo`` model (the
built-in deterministic test double): tasks that succeed, one that fails, one that
succeeds after a retry and one the client abandons. The dashboard (/ui),
``taskgate tasks``, ``taskgate report`` and /metrics then have something to show.
``init`` writes the packaged default config to a file to start from.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import IO

from gateway.cli.client import APIError, Client, CLIError
from gateway.config.load import PACKAGED_CONFIG

# (task type, outcome the client reports, prompts; a marker makes the demo model fail or flake)
SAMPLES = (
    ("ticket-triage", "succeeded", ("Triage this ticket: the printer is on fire",
                                    "Write a two-line reply to the customer")),
    ("ticket-triage", "succeeded", ("Triage this ticket: VPN drops every hour",)),
    ("ticket-triage", "succeeded", ("Triage this ticket: flaky login [demo:flaky]",)),  # one retry, then an answer
    ("research", "succeeded", ("Summarise the quarterly numbers", "List three risks", "Draft the memo")),
    ("research", "failed", ("Find the source for this claim [demo:fail]",)),  # the model fails: the task fails
    ("research", "abandoned", ("Start a literature review",)),  # the client gives up
)


def _chat(client: Client, task_id: str, task_type: str, prompt: str, model: str) -> tuple[int, str]:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    headers = {"Content-Type": "application/json", "X-Task-Id": task_id, "X-Task-Type": task_type}
    if client.key:
        headers["Authorization"] = f"Bearer {client.key}"
    status, raw = client.transport("POST", client.url.rstrip("/") + "/v1/chat/completions", headers,
                                   json.dumps(body).encode(), client.timeout)
    try:
        data = json.loads(raw)
    except ValueError:
        return status, raw[:200].decode("utf-8", "replace")
    if status >= 400:
        return status, str((data.get("error") or {}).get("message") if isinstance(data, dict) else data)
    return status, data["choices"][0]["message"]["content"] or ""


def run_demo(client: Client, model: str = "demo", out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    stamp = time.strftime("%H%M%S")
    print(f"Sending {len(SAMPLES)} sample tasks to {client.url} (model '{model}'):", file=out)
    for n, (task_type, outcome, prompts) in enumerate(SAMPLES, 1):
        task_id = f"demo-{stamp}-{n}"
        statuses = [_chat(client, task_id, task_type, p, model)[0] for p in prompts]
        if statuses[0] == 404:
            raise CLIError(f"the gateway has no model '{model}'; use a config with the demo model "
                           "(`taskgate init`) or pass --model")
        if statuses[0] in (401, 403):
            raise CLIError("the gateway refused the key; pass --key or set TASKGATE_API_KEY")
        try:
            client.complete_task(task_id, outcome)
        except APIError as exc:
            raise CLIError(f"completing {task_id}: {exc}") from None
        calls = ", ".join(str(s) for s in statuses)
        print(f"  {task_id}  {task_type:<14} {outcome:<10} requests: {calls}", file=out)
    print("Now look at: taskgate tasks | taskgate report | "
          f"{client.url.rstrip('/')}/ui | {client.url.rstrip('/')}/metrics", file=out)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.path)
    if target.exists() and not args.force:
        print(f"taskgate: {target} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    shutil.copyfile(PACKAGED_CONFIG, target)
    print(f"wrote {target}: the default config (the demo model, a local Ollama model, and cloud models that "
          "turn on when their keys are set). Edit it, then: taskgate check --config "
          f"{target} && taskgate serve --config {target}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from gateway.cli.tasks import _client, _common, _run

    demo = sub.add_parser("demo", help="send sample tasks to a running gateway's demo model",
                          description="Sends sample tasks (succeeded, failed, retried, abandoned) to the demo "
                                      "model of a running gateway, so that /ui, `taskgate report` and /metrics "
                                      "show something.")
    demo.add_argument("--model", default="demo", help="the model to send them to (default: demo)")
    _common(demo)
    demo.set_defaults(func=_run(lambda args: run_demo(_client(args), args.model)))
    init = sub.add_parser("init", help="write a starter config (the packaged default) to a file")
    init.add_argument("path", nargs="?", default="taskgate.yaml", help="where (default: taskgate.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init)

