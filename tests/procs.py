"""Managed subprocesses for the tests: start, wait until ready, stop.

``ManagedProcess`` runs one command (it may be started again after it stopped), with its
stdout and stderr appended to a log file. ``start`` polls a readiness predicate until it
holds; if the process exits first or the deadline passes, the process is stopped and a
``RuntimeError`` carries the tail of the log. ``stop`` sends SIGTERM, waits, then SIGKILLs.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

Ready = Callable[[], bool]


class ManagedProcess:
    """One command run with Popen; its output is appended to ``log_path``."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path, *, cwd: Path | str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, ready: Ready, timeout: float = 20, interval: float = 0.1) -> None:
        """Start the command and return once ``ready()`` is true; on failure stop it and raise."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if ready():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready within {timeout}s:\n{self.log_tail()}")
            time.sleep(interval)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL if it is still running after ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        self.proc.kill()
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


# --- readiness predicates ----------------------------------------------------------

def redis_ping(port: int, host: str = "127.0.0.1") -> Ready:
    """True once a Redis server on ``host:port`` answers PING."""
    def ready() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False
    return ready


def http_status(url: str, status: int = 200, timeout: float = 1) -> Ready:
    """True once ``GET url`` answers with ``status``."""
    def ready() -> bool:
        try:
            return httpx.get(url, timeout=timeout).status_code == status
        except httpx.HTTPError:
            return False
    return ready
