"""The systems the benchmark measures: direct, the bare pass-through, Taskgate and the peers."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import BENCH, PEERS, ROOT, TEMPLATE_MOCK_BASE, git_rev

# --------------------------------------------------------------------------
# systems
# --------------------------------------------------------------------------
class Ctx:
    def __init__(self, args, tmp: Path, mock_port: int, mock_pid: int, pin: bool):
        self.args = args
        self.tmp = tmp
        self.mock_port = mock_port
        self.mock_pid = mock_pid
        self.mock_base = f"http://127.0.0.1:{mock_port}"
        self.mock_v1 = f"{self.mock_base}/v1"
        self.pin = pin
        self.log_dir: Path | None = None
        self.store = None  # store.SharedStore with --store shared, else None (each gateway's embedded store)


class System:
    """A thing to benchmark. Override command() (None = no process of its own)."""

    name = "?"
    description = ""
    chat_path = "/v1/chat/completions"
    ready_path = "/health"
    model = "bench-model"
    startup_timeout = 30.0

    def available(self, ctx: Ctx) -> str | None:
        """None if it can run here, else the reason it can't."""
        return None

    def headers(self, ctx: Ctx) -> dict[str, str]:
        return {}

    def command(self, ctx: Ctx, port: int, workdir: Path) -> list[str] | None:
        raise NotImplementedError

    def env(self, ctx: Ctx) -> dict[str, str]:
        return {}

    def version(self) -> str:
        return ""


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return "?"


class Direct(System):
    name = "direct"
    description = "the mock upstream itself (no gateway)"

    def command(self, ctx, port, workdir):
        return None

    def version(self):
        return f"httptools {_dist_version('httptools')}, uvloop {_dist_version('uvloop')}"


class Passthrough(System):
    name = "passthrough"
    description = "bare ASGI pass-through: uvicorn+httptools+uvloop, one pooled aiohttp session"

    def command(self, ctx, port, workdir):
        return [sys.executable, str(BENCH / "passthrough.py"), "--host", "127.0.0.1",
                "--port", str(port), "--upstream", ctx.mock_base]

    def version(self):
        return (f"uvicorn {_dist_version('uvicorn')}, aiohttp {_dist_version('aiohttp')}, "
                f"uvloop {_dist_version('uvloop')}")


def render_template(src: Path, dst: Path, ctx: Ctx) -> Path:
    text = src.read_text()
    text = text.replace(TEMPLATE_MOCK_BASE, ctx.mock_v1)
    dst.write_text(text)
    return dst


def taskgate_config(ctx: Ctx, workdir: Path, system: str) -> Path:
    """bench/gateway.yaml for one Taskgate system; with --store shared, on the bench's redis-server."""
    cfg = render_template(BENCH / "gateway.yaml", workdir / "gateway.yaml", ctx)
    if ctx.store is not None:
        with cfg.open("a") as f:
            f.write(f"\n# --store shared (bench/store.py)\nstore:\n  url: {ctx.store.url(system)}\n")
    return cfg


class Taskgate(System):
    name = "taskgate"
    description = "taskgate serve --config bench/gateway.yaml"
    ready_path = "/readyz"
    startup_timeout = 60.0

    def command(self, ctx, port, workdir):
        cfg = taskgate_config(ctx, workdir, self.name)
        a = ctx.args
        if a.taskgate_cmd:
            base = shlex.split(a.taskgate_cmd)
        else:
            exe = Path(sys.executable).with_name("taskgate")
            if exe.exists():
                base = [str(exe)]
            elif shutil.which("taskgate"):
                base = [shutil.which("taskgate")]
            else:  # not installed: run the entry point from the source tree
                base = [sys.executable, "-c",
                        "import sys; from gateway.cli.main import main; sys.exit(main())"]
        return base + ["serve", "--config", str(cfg), "--host", "127.0.0.1",
                       "--port", str(port), "--workers", str(a.workers)]

    def env(self, ctx):
        pp = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": str(ROOT) + (os.pathsep + pp if pp else "")}

    def version(self):
        return f"taskgate {_dist_version('taskgate')} @ {git_rev() or '?'}{_dirty(ROOT)}"



class TaskgateTwoWorkers(Taskgate):
    """The same gateway with two workers, in the same run as ``taskgate`` (one worker), so that
    the issue's "--workers 2 >= 1.6x one worker" compares two systems measured side by side."""

    name = "taskgate-2w"
    description = "taskgate serve --config bench/gateway.yaml --workers 2"

    def command(self, ctx, port, workdir):
        cmd = super().command(ctx, port, workdir)
        cmd[-1] = "2"  # after "--workers"
        return cmd

def _git(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    # --no-optional-locks: never touch an index (another process may be committing)
    return subprocess.run(["git", "--no-optional-locks", "-C", str(cwd), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def _dirty(tree: Path) -> str:
    """' + uncommitted changes' when gateway/ differs from HEAD in that tree."""
    try:
        r = _git("diff", "--quiet", "HEAD", "--", "gateway", cwd=tree, timeout=10)
        return " + uncommitted changes" if r.returncode == 1 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def baseline_worktree(rev: str) -> tuple[Path, str, str, bool]:
    """A detached git worktree of `rev` under the temp dir, created or reused.

    Returns (path, full sha, short sha, reused). Raises RuntimeError with a
    message for the user when rev is unknown or the directory is in the way.
    """
    r = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if r.returncode != 0 or not r.stdout.strip():
        raise RuntimeError(f"--baseline {rev}: not a commit in {ROOT}")
    sha = r.stdout.strip()
    short = _git("rev-parse", "--short", sha).stdout.strip() or sha[:7]
    path = Path(tempfile.gettempdir()) / f"taskgate-bench-baseline-{short}"
    if path.exists():
        head = _git("rev-parse", "HEAD", cwd=path)
        if head.returncode != 0 or head.stdout.strip() != sha:
            raise RuntimeError(
                f"--baseline {rev}: {path} exists but is not a checkout of {short} "
                f"(HEAD {head.stdout.strip() or '?'}); remove it (git worktree remove --force {path}) "
                "and run again")
        return path, sha, short, True
    # -f: also when a worktree there was registered and its directory deleted
    r = _git("worktree", "add", "-f", "--detach", str(path), sha, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"--baseline {rev}: git worktree add failed: {(r.stderr or r.stdout).strip()}")
    return path, sha, short, False


# Older revisions have gateway/cli.py (entry point gateway.cli:main), newer
# ones the package gateway/cli/ with gateway/cli/main.py (gateway.cli.main:main).
BASELINE_BOOT = ("import sys, importlib; sys.argv[0] = 'taskgate'; c = importlib.import_module('gateway.cli'); "
                 "m = importlib.import_module('gateway.cli.main') if hasattr(c, '__path__') else c; "
                 "sys.exit(m.main())")


class TaskgateBaseline(Taskgate):
    """Taskgate at another revision (--baseline REV), run from a git worktree of it
    with this venv's python and PYTHONPATH=<worktree>: same interpreter,
    dependencies, config and CPU placement as `taskgate`, only the code differs."""

    def __init__(self, worktree: Path, sha: str, short: str, rev: str):
        self.worktree, self.sha, self.short, self.rev = worktree, sha, short, rev
        self.name = f"taskgate@{short}"
        self.description = f"taskgate serve --config bench/gateway.yaml, code of {rev} ({short}) from {worktree}"

    def available(self, ctx):
        # the worktree's package must win over the editable install of this checkout
        env = dict(os.environ)
        env.update(self.env(ctx))
        try:
            r = subprocess.run([sys.executable, "-c", "import gateway; print(gateway.__file__)"],
                               capture_output=True, text=True, env=env, cwd=str(ctx.tmp), timeout=30,
                               check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"could not import gateway from {self.worktree}: {e}"
        got = r.stdout.strip()
        if r.returncode != 0 or not Path(got).resolve().is_relative_to(self.worktree.resolve()):
            return (f"'import gateway' does not load the baseline's code (got {got or r.stderr.strip()[-200:]!r}, "
                    f"expected under {self.worktree})")
        return None

    def command(self, ctx, port, workdir):
        cfg = taskgate_config(ctx, workdir, self.name)
        return [sys.executable, "-c", BASELINE_BOOT, "serve", "--config", str(cfg),
                "--host", "127.0.0.1", "--port", str(port), "--workers", str(ctx.args.workers)]

    def env(self, ctx):
        pp = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": str(self.worktree) + (os.pathsep + pp if pp else "")}

    def version(self):
        v = "?"
        try:
            m = re.search(r'^version\s*=\s*"([^"]+)"', (self.worktree / "pyproject.toml").read_text(),
                          re.MULTILINE)
            v = m.group(1) if m else "?"
        except OSError:
            pass
        return f"taskgate {v} @ {self.short}{_dirty(self.worktree)} (worktree {self.worktree})"


# ---- peers ---------------------------------------------------------------
# Installed by bench/setup_peers.sh into the git-ignored bench/.peers/.
LITELLM_BIN = PEERS / "litellm-venv" / "bin" / "litellm"
PORTKEY_DIR = PEERS / "portkey"
PORTKEY_ENTRY = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


class LiteLLM(System):
    """LiteLLM Proxy (litellm[proxy]==1.106.2 in bench/.peers/litellm-venv)."""

    name = "litellm"
    description = "LiteLLM Proxy 1.106.2, litellm --config ... --num_workers W"
    ready_path = "/health/liveliness"
    startup_timeout = 120.0

    def available(self, ctx):
        if not LITELLM_BIN.exists():
            return f"not installed ({LITELLM_BIN.relative_to(ROOT)} missing: run bench/setup_peers.sh)"
        return None

    def command(self, ctx, port, workdir):
        cfg = render_template(BENCH / "litellm.yaml", workdir / "litellm.yaml", ctx)
        return [str(LITELLM_BIN), "--config", str(cfg), "--host", "127.0.0.1",
                "--port", str(port), "--num_workers", str(ctx.args.workers)]

    # LiteLLM refuses to start without a (strong) master key; no DB, so the
    # check is a constant-time compare against this key on every request.
    master_key = "sk-bench-5f0c7e2a9b3d4c1e8a6f2b7d9c0e1a3b"

    def headers(self, ctx):
        return {"Authorization": f"Bearer {self.master_key}"}

    def env(self, ctx):
        return {"LITELLM_MASTER_KEY": self.master_key,
                "PYTHONPATH": "",
                "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DISABLE_SCHEMA_UPDATE": "True"}


    def version(self):
        hits = sorted(LITELLM_BIN.parent.parent.glob("lib/python*/site-packages/litellm-*.dist-info"))
        return ("litellm " + hits[-1].name[len("litellm-"):-len(".dist-info")]) if hits else "?"


class Portkey(System):
    """Portkey AI Gateway (npm @portkey-ai/gateway in bench/.peers/portkey)."""

    name = "portkey"
    description = "Portkey gateway (node), x-portkey-provider: openai + custom host"
    ready_path = "/"
    startup_timeout = 30.0

    def available(self, ctx):
        if not PORTKEY_ENTRY.exists():
            return f"not installed ({PORTKEY_ENTRY.relative_to(ROOT)} missing: run bench/setup_peers.sh)"
        if not shutil.which("node"):
            return "node not found"
        return None

    def headers(self, ctx):
        return {"x-portkey-provider": "openai", "x-portkey-custom-host": ctx.mock_v1}

    def command(self, ctx, port, workdir):
        return [shutil.which("node") or "node", str(PORTKEY_ENTRY), f"--port={port}", "--headless"]

    def env(self, ctx):
        return {"NODE_ENV": "production"}

    def version(self):
        try:
            pk = json.loads((PORTKEY_ENTRY.parent.parent / "package.json").read_text())["version"]
            hono = json.loads((PORTKEY_DIR / "node_modules/@hono/node-server/package.json").read_text())
            return f"@portkey-ai/gateway {pk} (@hono/node-server {hono['version']}), node {_node_version()}"
        except (OSError, ValueError, KeyError):
            return "?"


def _node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


SYSTEMS: dict[str, type[System]] = {c.name: c for c in (Direct, Passthrough, Taskgate, TaskgateTwoWorkers, LiteLLM, Portkey)}


