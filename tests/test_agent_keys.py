"""Agent keys (issue 14): scope never wider than the person's, attribution in tasks, reports and
metrics, revocation cascade; the CLI drives a real ``taskgate serve``; and authentication cost does
not grow with the number of configured keys."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import openai
import pytest

from gateway.config.load import parse
from gateway.edge.auth import authenticate
from gateway.errors import Unauthorized
from tests.conftest import ROOT, Fakes
from tests.test_keys import ADMIN, PROMPT, admin, config, sdk


def cli(gw: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--url", gw.url, "--key", ADMIN],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.fixture(scope="module")
def shared_gw(fakes: Fakes, redis_server: Any, module_gateway_factory: Any) -> Any:
    """One gateway for the module: the tests keep apart by their own tenants, task ids and keys."""
    return module_gateway_factory(config(fakes, redis_server.url))


@pytest.fixture
def gw(clean_fakes: Fakes, shared_gw: Any) -> Any:
    return shared_gw


def test_agent_scope_attribution_report_metrics_and_cascade(gw: Any) -> None:
    person = admin(gw, "POST", "/v1/keys", json={"tenant": "acme", "name": "alice", "models": ["chat"],
                                                 "budget_usd": "100", "rpm": 60}).json()
    pid = person["id"]
    # wider than the person: refused with 400
    for wider in ({"models": ["chat", "other"]}, {"budget_usd": "101"}, {"rpm": 61}):
        r = admin(gw, "POST", "/v1/keys", json={"agent_of": pid, "name": "bot", **wider})
        assert r.status_code == 400 and r.json()["error"]["code"] == "scope_wider_than_person", r.text
    agent = admin(gw, "POST", "/v1/keys", json={"agent_of": pid, "name": "triage-bot", "budget_usd": "5"}).json()
    assert agent["tenant"] == "acme" and agent["models"] == ["chat"] and agent["rpm"] == 60
    assert agent["actor"] == "agent" and agent["agent_of"] == pid
    # an agent cannot have agents of its own
    nested = admin(gw, "POST", "/v1/keys", json={"agent_of": agent["id"], "name": "sub"})
    assert nested.status_code == 400 and nested.json()["error"]["code"] == "agent_of_agent"
    with pytest.raises(openai.PermissionDeniedError):
        sdk(gw, agent["key"]).chat.completions.create(model="other", messages=PROMPT)

    # attribution: the agent's task and the person's task
    for key, task in ((agent["key"], "agent-job"), (person["key"], "human-job")):
        sdk(gw, key).chat.completions.create(model="chat", messages=PROMPT, extra_headers={"X-Task-Id": task})
        done = httpx.post(f"{gw.url}/v1/tasks/{task}/complete", json={"outcome": "succeeded"},
                          headers={"authorization": f"Bearer {key}"}, timeout=10)
        assert done.status_code == 200, done.text
    t = httpx.get(f"{gw.url}/v1/tasks/agent-job", headers={"authorization": f"Bearer {person['key']}"},
                  params={"include": "attempts"}, timeout=10).json()
    assert (t["actor"], t["agent"], t["person"], t["key_id"]) == ("agent", "triage-bot", pid, agent["id"])
    assert t["attempt_records"][0]["actor"] == "agent" and t["attempt_records"][0]["person"] == pid
    h = httpx.get(f"{gw.url}/v1/tasks/human-job", headers={"authorization": f"Bearer {person['key']}"}, timeout=10).json()
    assert (h["actor"], h["agent"], h["person"]) == ("human", None, pid)

    report = admin(gw, "GET", "/v1/reports/tasks", params={"by": "actor", "tenant": "acme"}).json()
    rows = {(r["person"], r["agent"]): r for r in report["actors"]}
    assert rows[(pid, "triage-bot")]["succeeded"] == 1 and rows[(pid, None)]["tasks"] == 1
    assert rows[(pid, "triage-bot")]["cost_per_succeeded_task_usd"] > 0
    out = cli(gw, "report", "--by", "actor", "--tenant", "acme")
    assert out.returncode == 0 and "triage-bot" in out.stdout, out.stderr

    # spend: the agent's counts in its person's key too
    keys = {k["id"]: k for k in admin(gw, "GET", "/v1/keys").json()["data"]}
    assert keys[agent["id"]]["spend_picousd"] > 0
    assert keys[pid]["spend_picousd"] >= 2 * keys[agent["id"]]["spend_picousd"] * 0.9

    metrics = httpx.get(f"{gw.url}/metrics", timeout=10).text
    assert any(line.startswith("taskgate_requests_total{") and 'actor="agent"' in line for line in metrics.splitlines())
    assert any(line.startswith("taskgate_cost_usd_total{") and 'actor="human"' in line for line in metrics.splitlines())

    # revoking the person's key revokes its agents
    revoked = admin(gw, "POST", f"/v1/keys/{pid}/revoke").json()["revoked_keys"]
    assert set(revoked) == {pid, agent["id"]}
    time.sleep(1.1)
    for key in (person["key"], agent["key"]):
        with pytest.raises(openai.AuthenticationError):
            sdk(gw, key).chat.completions.create(model="chat", messages=PROMPT)


def test_tenant_scoping(gw: Any) -> None:
    acme = admin(gw, "POST", "/v1/keys", json={"tenant": "acme"}).json()["key"]
    other = admin(gw, "POST", "/v1/keys", json={"tenant": "globex"}).json()["key"]
    sdk(gw, acme).chat.completions.create(model="chat", messages=PROMPT, extra_headers={"X-Task-Id": "acme-job"})
    hdr = {"authorization": f"Bearer {other}"}
    assert httpx.get(f"{gw.url}/v1/tasks/acme-job", headers=hdr, timeout=10).status_code == 404
    assert httpx.get(f"{gw.url}/v1/tasks", headers=hdr, timeout=10).json()["data"] == []
    assert httpx.get(f"{gw.url}/v1/tasks", headers=hdr, params={"tenant": "acme"}, timeout=10).status_code == 404
    assert httpx.get(f"{gw.url}/v1/audit", headers=hdr, params={"tenant": "acme"}, timeout=10).status_code == 404
    assert httpx.get(f"{gw.url}/v1/audit", headers=hdr, timeout=10).status_code == 200


def test_cli_create_list_revoke_rotate(gw: Any) -> None:
    made = cli(gw, "keys", "create", "--tenant", "acme", "--models", "chat", "--budget-usd", "30", "--rpm", "10",
               "--expires", "30d")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    key_id = made.stderr.split("created key ", 1)[1].split()[0]
    assert key.startswith("tg-") and sdk(gw, key).chat.completions.create(model="chat", messages=PROMPT).choices
    agent = cli(gw, "keys", "create", "--agent-of", key_id, "--name", "helper")
    assert agent.returncode == 0, agent.stderr
    wider = cli(gw, "keys", "create", "--agent-of", key_id, "--name", "greedy", "--budget-usd", "40")
    assert wider.returncode == 1 and "must not exceed" in wider.stderr
    listed = cli(gw, "keys", "list", "--tenant", "acme", "--json")
    assert listed.returncode == 0 and key not in listed.stdout and key_id in listed.stdout
    table = cli(gw, "keys", "list", "--wide")
    assert table.returncode == 0 and key_id[:8] in table.stdout and "helper" in table.stdout
    rotated = cli(gw, "keys", "rotate", key_id)
    assert rotated.returncode == 0 and rotated.stdout.strip() != key
    time.sleep(1.1)
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, key).chat.completions.create(model="chat", messages=PROMPT)
    new_key = rotated.stdout.strip()
    assert sdk(gw, new_key).chat.completions.create(model="chat", messages=PROMPT).choices
    assert cli(gw, "keys", "revoke", key_id).returncode == 0
    refused = subprocess.run([sys.executable, "-m", "gateway", "keys", "list", "--url", gw.url, "--key", new_key],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert refused.returncode == 1


async def test_thousand_config_keys_and_a_huge_token() -> None:
    keys = "\n".join(f"    - {{key: config-key-{i:06d}, tenant: t{i % 7}}}" for i in range(1000))
    cfg = parse(f"model_list: []\nauth:\n  keys:\n{keys}\n", "k.yaml", {})
    assert b"config-key-000001" not in repr(dict(cfg.keys)).encode()
    for i in (0, 500, 999):
        tenant = await authenticate({"authorization": f"Bearer config-key-{i:06d}"}, cfg, None)
        assert tenant.name == f"t{i % 7}"
    for bad in ("config-key-001000", "tg-" + "x" * 40, "config-key-00000"):
        with pytest.raises(Unauthorized):
            await authenticate({"authorization": f"Bearer {bad}"}, cfg, None)
    huge = {"authorization": "Bearer " + "k" * (1 << 20)}
    started = time.perf_counter()
    with pytest.raises(Unauthorized):
        await authenticate(huge, cfg, None)
    assert time.perf_counter() - started < 0.05


def test_an_agents_requests_count_in_its_virtual_persons_rate_bucket(gw: Any) -> None:
    """Policed as its person: a virtual person key with rpm 2 (a bucket two requests deep, as
    limits.burst_s is 60) admits two requests in all, whether the person or its agent sends them."""
    person = admin(gw, "POST", "/v1/keys", json={"tenant": "acme", "name": "bob", "rpm": 2}).json()
    agent = admin(gw, "POST", "/v1/keys", json={"agent_of": person["id"], "name": "helper-bot"}).json()
    assert agent["rpm"] == 2  # inherited, never wider
    sdk(gw, person["key"]).chat.completions.create(model="chat", messages=PROMPT)
    sdk(gw, agent["key"]).chat.completions.create(model="chat", messages=PROMPT)
    for key in (agent["key"], person["key"]):
        with pytest.raises(openai.RateLimitError) as refused:
            sdk(gw, key).with_options(max_retries=0).chat.completions.create(model="chat", messages=PROMPT)
        assert refused.value.response.headers["x-ratelimit-limit-requests"] == "2"
