"""The ``taskgate`` command: ``serve`` and ``check``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Sequence

from gateway.config import load as config_mod

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4000


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


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 1
    deployments = cfg.deployments
    print(f"config OK: {cfg.source}")
    print(f"  public models: {', '.join(cfg.public_models()) or '(none)'}")
    print(f"  deployments enabled: {len(deployments)}")
    for d in deployments:
        print(f"    {d.id}: {d.kind}/{d.model}")
    unsupported = [off for off in cfg.disabled if off.cause == "kind"]
    for off in cfg.disabled:
        label = "warning: disabled" if off.cause == "kind" else "disabled"
        print(f"  {label}: {off.id}: {off.reason}")
    print(f"  store: {'embedded at ' + cfg.store.path if cfg.store.url == 'embedded' else 'redis (shared)'}")
    print(f"  auth: {len(cfg.keys)} key(s)" if cfg.keys else "  auth: off (no keys configured)")
    for note in cfg.notes:
        print(f"  {'warning (security)' if note.security else 'note'}: {note}")
    if args.strict and unsupported:
        print(f"taskgate check --strict: {len(unsupported)} deployment(s) use a provider kind Taskgate cannot "
              "serve", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 1
    import uvicorn

    from gateway.store.embedded import STORE_URL_ENV, EmbeddedRedis, StoreError

    os.environ["TASKGATE_CONFIG"] = os.path.abspath(cfg.source)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    embedded = None
    if cfg.store.url == "embedded" and STORE_URL_ENV not in os.environ:
        embedded = EmbeddedRedis(cfg.store.path)
        try:
            os.environ[STORE_URL_ENV] = embedded.start()
        except StoreError as exc:
            print(f"taskgate: {exc}", file=sys.stderr)
            return 1
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="taskgate-metrics-")
    level = os.environ.get("TASKGATE_LOG_LEVEL", "INFO").upper()
    try:
        uvicorn.run(
            "gateway.edge.asgi:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
            http="httptools", loop="uvloop", lifespan="on", access_log=False, log_config=log_config(level),
            timeout_graceful_shutdown=10,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="taskgate", description="An LLM gateway that prices AI work per completed task.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="config file (default: $TASKGATE_CONFIG, else config/gateway.yaml)")
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check", help="validate a config")
    check.add_argument("--config", help="config file (default: $TASKGATE_CONFIG, else config/gateway.yaml)")
    check.add_argument("--strict", action="store_true",
                       help="fail when a deployment uses a provider kind Taskgate cannot serve")
    check.set_defaults(func=cmd_check)
    # --- ledger commands: tasks, tasks show, tasks complete, report (gateway/cli/tasks.py) ---
    from gateway.cli.tasks import add_commands as add_ledger_commands

    add_ledger_commands(sub)
    # --- end ledger commands ---
    from gateway.cli.audit import add_command as add_audit_command

    add_audit_command(sub)
    from gateway.cli.demo import add_commands as add_demo_commands

    add_demo_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        print("taskgate: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
