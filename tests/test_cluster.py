"""The gateway on a real Redis Cluster: three local nodes, every slot covered, a gateway process
with ``store.url: redis+cluster://``, three tenants with budgets. Each tenant's keys live in
one slot; the tenants spread over the nodes; the ledger is exact."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import redis

from gateway.ledger.keys import for_tenant
from tests.conftest import Fakes, free_port, model_entry, redis_binary
from tests.procs import ManagedProcess, redis_ping
from tests.test_ledger_faults import wait_for


def cluster_port() -> int:
    """A free port that leaves room for its cluster bus port (port + 10000 must be valid)."""
    for _ in range(100):
        port = free_port()
        if port <= 55000:
            return port
    raise RuntimeError("no free port below 55000")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed (the Debian redis-tools package)")
    base = tmp_path_factory.mktemp("cluster")
    ports = [cluster_port() for _ in range(3)]
    nodes = []
    for port in ports:
        d = base / str(port)
        d.mkdir()
        node = ManagedProcess(f"redis-cluster-{port}", [
            redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{port}.conf", "--dir", str(d), "--save", "", "--appendonly", "no"],
            d / "log")
        node.start(redis_ping(port))
        nodes.append(node)
    subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                    "--cluster-yes"], check=True, capture_output=True, timeout=30)
    wait_for(lambda: b"cluster_state:ok" in subprocess.run([cli, "-p", str(ports[0]), "cluster", "info"],
                                                            capture_output=True).stdout, what="cluster ok")
    yield ports
    for node in nodes:
        node.stop()


def test_the_ledger_on_a_redis_cluster(cluster: list[int], clean_fakes: Fakes, gateway_factory: Any) -> None:
    fakes = clean_fakes
    tenants = {"acme": "sk-acme-0001", "beta": "sk-beta-0002", "gamma": "sk-gamma-003"}
    cfg = {"model_list": [model_entry("chat", fakes.params("openai"), id="oa")],
           "store": {"url": f"redis+cluster://127.0.0.1:{cluster[0]}"},
           "auth": {"keys": [{"key": key, "tenant": t} for t, key in tenants.items()]},
           "budgets": {"tenants": {t: {"daily_usd": 5} for t in tenants}}}
    gw = gateway_factory(cfg)
    for tenant, key in tenants.items():
        for i in range(10):
            r = httpx.post(f"{gw.url}/v1/chat/completions", timeout=20,
                           headers={"authorization": f"Bearer {key}", "x-task-id": "job", "x-task-budget-usd": "1"},
                           json={"model": "chat", "messages": [{"role": "user", "content": f"hi {i}"}]})
            assert r.status_code == 200, r.text
    billed = fakes.openai.billed.input_tokens
    per_tenant = {}
    for tenant, key in tenants.items():
        headers = {"authorization": f"Bearer {key}"}
        wait_for(lambda: httpx.get(f"{gw.url}/v1/tasks/job", headers=headers).json().get("requests") == 10,
                 what=f"{tenant}'s records")
        done = httpx.post(f"{gw.url}/v1/tasks/job/complete", headers=headers, json={"outcome": "succeeded"})
        assert done.status_code == 200 and done.json()["reserved_picousd"] == 0
        per_tenant[tenant] = done.json()
    assert sum(t["input_tokens"] for t in per_tenant.values()) == billed
    client = redis.RedisCluster(host="127.0.0.1", port=cluster[0])
    try:
        slots = {t: {client.keyslot(k) for k in (for_tenant(t).task("job"), for_tenant(t).tasks,
                                                  for_tenant(t).records, for_tenant(t).open)} for t in tenants}
        assert all(len(s) == 1 for s in slots.values()), "one slot per tenant"
        owners = {client.get_node_from_key(for_tenant(t).tasks).port for t in tenants}
        report = httpx.get(f"{gw.url}/v1/reports/tasks", headers={"authorization": "Bearer sk-acme-0001"}).json()
        assert report["task_types"][0]["succeeded"] == 1
    finally:
        client.close()
    print(f"\nRedis Cluster: 3 nodes, tenants on {len(owners)} node(s), 30 requests recorded exactly")
