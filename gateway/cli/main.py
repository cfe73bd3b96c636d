"""The ``taskgate`` command: ``serve`` and ``check``."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from typing import Mapping, Sequence

from gateway.config import load as config_mod

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4000
ACCESS_LOG_ENV = "TASKGATE_ACCESS_LOG"


def log_config(level: str) -> dict[str, object]:
    """Logging for the server and every worker: one line per record, on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {"uvicorn.access": {"level": "WARNING"}},
    }


def _load(path: str | None) -> config_mod.Config | None:
    try:
        return config_mod.load(config_mod.config_path(path))
    except config_mod.ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _price_source(cfg: config_mod.Config) -> str | None:
    """Where prices come from, with the number of priced models; None (and a message) when the map is invalid."""
    from gateway.accounting.prices import BUNDLED, PriceMapError, bundled_map_path, load_price_map

    try:
        price_map = load_price_map(cfg.pricing.map_path)
    except PriceMapError as exc:
        print(f"invalid config {cfg.source}:\n  - pricing.map_path: {exc}", file=sys.stderr)
        return None
    priced = sum(1 for e in price_map.values() if e.get("input_cost_per_token") is not None)
    where = cfg.pricing.map_path or f"{BUNDLED}, {bundled_map_path()}"
    return f"{where} ({priced} priced models)"


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 1
    prices = _price_source(cfg)
    if prices is None:
        return 1
    deployments = cfg.deployments
    print(f"config OK: {cfg.source}")
    print(f"  public models: {', '.join(cfg.public_models()) or '(none)'}")
    print(f"  deployments enabled: {len(deployments)}")
    for d in deployments:
        print(f"    {d.id}: {d.kind}/{d.model}")
    for wild in cfg.wildcards:
        print(f"    {wild.id}: {wild.params.get('model')} (wildcard '{wild.pattern}': the client's model goes through)")
    unsupported = [off for off in cfg.disabled if off.cause == "kind"]
    for off in cfg.disabled:
        label = "warning: disabled" if off.cause == "kind" else "disabled"
        print(f"  {label}: {off.id}: {off.reason}")
    print(f"  prices: {prices}")
    print(f"  store: {'embedded at ' + cfg.store.path if cfg.store.url == 'embedded' else 'redis (shared)'}")
    print(f"  auth: {len(cfg.keys)} key(s)" if cfg.keys else "  auth: off (no keys configured)")
    for note in cfg.notes:
        print(f"  {'warning (security)' if note.security else 'note'}: {note}")
    if args.strict and unsupported:
        print(f"taskgate check --strict: {len(unsupported)} deployment(s) use a provider kind Taskgate cannot "
              "serve", file=sys.stderr)
        return 1
    return 0


def _deployment_line(dep_id: str, kind: str, model: str, info: Mapping[str, object]) -> str:
    where = [str(info["region"])] if info.get("region") else []
    if info.get("open_weight"):
        where.append("open-weight")
    return f"{dep_id}: {kind}/{model}" + (f" [{', '.join(where)}]" if where else "")


def startup_lines(cfg: config_mod.Config, url: str, placement: str | None = None) -> list[str]:
    """What ``serve`` prints at start: the models and deployments it serves, the store and auth."""
    lines = [f"taskgate: config {cfg.source}"]
    for name in cfg.public_models():
        deps = "; ".join(_deployment_line(d.id, d.kind, d.model, d.model_info) for d in cfg.groups[name])
        lines.append(f"  model {name}: {deps}")
    for wild in cfg.wildcards:
        lines.append(f"  model {wild.pattern} (wildcard): {wild.id}: {wild.params.get('model')}")
    if cfg.disabled:
        lines.append(f"  {len(cfg.disabled)} deployment(s) disabled: `taskgate check` says why")
    store = f"embedded at {os.path.abspath(cfg.store.path)}" if cfg.store.url == "embedded" else "redis (shared)"
    lines.append(f"  store: {store}" + (f" ({placement})" if placement else ""))
    if cfg.keys:
        lines.append(f"  auth: on ({len(cfg.keys)} key(s))")
    else:
        lines.append(f"  auth: off: anyone who can reach {url} can use it (set auth.keys or a master_key)")
    lines += [f"  warning (security): {note}" for note in cfg.notes if note.security]
    lines.append(f"  listening on {url}" + (" (access log on)" if os.environ.get(ACCESS_LOG_ENV) == "1" else ""))
    return lines


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None or (cfg.pricing.map_path and _price_source(cfg) is None):
        return 1
    from gateway.cli.bind import bind_refusal, open_warning

    refusal = bind_refusal(cfg, args.host)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    if args.access_log:
        os.environ[ACCESS_LOG_ENV] = "1"
    from gateway.store.embedded import STORE_URL_ENV, EmbeddedRedis, StoreError, cpu_plan

    starts_store = cfg.store.url == "embedded" and STORE_URL_ENV not in os.environ
    plan = cpu_plan(cfg.store.pin_cpu, args.workers) if starts_store else None
    print("\n".join(startup_lines(cfg, f"http://{args.host}:{args.port}", plan.describe() if plan else None)),
          file=sys.stderr, flush=True)
    if (warning := open_warning(cfg, args.host)) is not None:
        print(warning, file=sys.stderr, flush=True)
    import uvicorn
    from uvicorn.importer import import_from_string

    os.environ["TASKGATE_CONFIG"] = os.path.abspath(cfg.source)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    embedded = None
    if starts_store:
        embedded = EmbeddedRedis(cfg.store.path, cpus=plan.store if plan else None)
        try:
            os.environ[STORE_URL_ENV] = embedded.start()
        except StoreError as exc:
            print(f"taskgate: {exc}", file=sys.stderr)
            return 1
        if plan is not None:  # this process, its threads and the workers it starts stay off the store's CPU
            os.sched_setaffinity(0, plan.gateway)
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="taskgate-metrics-")
    level = os.environ.get("TASKGATE_LOG_LEVEL", "INFO").upper()
    try:
        uvicorn.run(
            "gateway.edge.asgi:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
            # by name, like the app: httptools plus the header size and read-timeout limits (issue 14)
            http=import_from_string("gateway.edge.server:TaskgateHttpProtocol"), loop="uvloop", lifespan="on",
            access_log=False, log_config=log_config(level),
            proxy_headers=False,  # applied to the FastAPI endpoints only (gateway/edge/asgi.py)
            ws="none",  # no WebSocket endpoint: an upgrade request is plain HTTP (and the websockets library stays unloaded)
            timeout_graceful_shutdown=max(1, math.ceil(cfg.server.drain_timeout_s)),
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


SERVER_COMMANDS = ("serve", "check")


def parser(server_only: bool = False) -> argparse.ArgumentParser:
    """The command line. ``server_only``: just ``serve`` and ``check``, without importing the client
    commands' modules (HTTP client, tables, CSV): a server process does not keep them in memory."""
    p = argparse.ArgumentParser(prog="taskgate", description="An LLM gateway that prices AI work per completed task.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="config file (default: $TASKGATE_CONFIG, else config/gateway.yaml)")
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--access-log", action="store_true",
                       help="one line per request: task, model, deployment, status, cost, milliseconds "
                            f"(also ${ACCESS_LOG_ENV}=1)")
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check", help="validate a config")
    check.add_argument("--config", help="config file (default: $TASKGATE_CONFIG, else config/gateway.yaml)")
    check.add_argument("--strict", action="store_true",
                       help="fail when a deployment uses a provider kind Taskgate cannot serve")
    check.set_defaults(func=cmd_check)
    if server_only:
        return p
    # --- ledger commands: tasks, tasks show, tasks complete, report (gateway/cli/tasks.py) ---
    from gateway.cli.tasks import add_commands as add_ledger_commands

    add_ledger_commands(sub)
    # --- end ledger commands ---
    from gateway.cli.audit import add_command as add_audit_command

    add_audit_command(sub)
    from gateway.cli.keys import add_commands as add_keys_commands

    add_keys_commands(sub)
    from gateway.cli.demo import add_commands as add_demo_commands

    add_demo_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(server_only=bool(argv) and argv[0] in SERVER_COMMANDS).parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        print("taskgate: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
