"""bench/run.py --store shared: the bench's own redis-server, where it runs, and the config it gives Taskgate."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import pytest

from gateway.config.load import load

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import store  # type: ignore[import-not-found]  # noqa: E402
import systems  # type: ignore[import-not-found]  # noqa: E402


@pytest.mark.parametrize(("spec", "available", "sut", "load_cpus", "pin", "expected"), [
    ("auto", {0, 1}, "0", "1", True, "1"),  # 2 CPUs: the load CPU, the only one outside the SUT's
    ("auto", {0, 1, 2, 3}, "0", "1", True, "3"),  # a CPU of its own when there is one
    ("auto", {0, 1, 2}, "0,1", "2", True, "2"),
    ("auto", {0}, "0", "0", True, None),  # nothing outside the SUT's CPUs
    ("auto", {0, 1}, "0", "1", False, None),  # --no-pin
    ("none", {0, 1}, "0", "1", True, None),
    ("0", {0, 1}, "0", "1", True, "0"),  # as asked
])
def test_the_shared_store_goes_outside_the_systems_cpus(spec: str, available: set[int], sut: str, load_cpus: str,
                                                        pin: bool, expected: str | None) -> None:
    assert store.pick_store_cpus(spec, available, sut, load_cpus, pin) == expected


def _ping(port: int, db: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(f"SELECT {db}\r\nCONFIG GET appendfsync\r\n".encode())
        return s.recv(200)


def test_each_taskgate_system_gets_its_database_on_the_shared_store(tmp_path: Path) -> None:
    shared = store.SharedStore(tmp_path, None)
    assert shared.start() is None
    try:
        ctx = systems.Ctx(argparse.Namespace(), tmp_path, 18000, 0, False)
        ctx.store = shared
        urls = []
        for name in ("taskgate", "taskgate@abc1234", "taskgate"):
            workdir = tmp_path / name.replace("@", "-")
            workdir.mkdir(exist_ok=True)
            cfg = load(systems.taskgate_config(ctx, workdir, name), env={})
            urls.append(cfg.store.url)
        port = shared.port
        assert urls == [f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1", f"redis://127.0.0.1:{port}/0"]
        assert b"everysec" in _ping(port, 1)  # persistence as production runs it
        assert "appendfsync everysec" in shared.describe()
    finally:
        shared.stop()
    assert shared.proc is None


def test_without_a_shared_store_the_config_is_the_template(tmp_path: Path) -> None:
    ctx = systems.Ctx(argparse.Namespace(), tmp_path, 18000, 0, False)
    cfg = load(systems.taskgate_config(ctx, tmp_path, "taskgate"), env={})
    assert cfg.store.url == "embedded"
