"""Routing and compliance end to end: real gateways, fakes that fail on demand, and the fakes' own
request logs as proof of where a request did (and did not) go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import ROOT, Fakes, base_config, model_entry

PROMPT = [{"role": "user", "content": "hello there"}]

COMPLIANCE = {
    "default_class": "internal",
    "data_classes": [
        {"name": "public"},
        {"name": "internal", "regions": ["eu", "us", "local"],
         "pii": {"payment_card": "block", "email": "redact", "national_id": "escalate",
                 "escalate_to": "restricted"}},
        {"name": "restricted", "open_weight": True, "kinds": ["ollama_chat", "hosted_vllm"]},
    ],
    "jurisdiction_rules": [
        {"deny": {"providers": ["bedrock"]}, "for": {"tenant_regions": ["eu"]},
         "reason": "EU tenants' data does not go to Bedrock (test rule)."},
    ],
}


def models(fakes: Fakes) -> list[dict[str, Any]]:
    return [
        model_entry("assistant", fakes.params("openai"), id="cloud-openai", region="us", open_weight=False),
        model_entry("assistant", fakes.params("azure"), id="cloud-azure", region="eu", open_weight=False),
        model_entry("assistant", fakes.params("bedrock"), id="cloud-bedrock", region="us", open_weight=False),
        model_entry("assistant", {**fakes.params("ollama"), "timeout": 2}, id="local-ollama", region="local",
                    open_weight=True),
    ]


def cfg(fakes: Fakes, redis_url: str, **extra: Any) -> dict[str, Any]:
    return base_config(redis_url, models(fakes), compliance=COMPLIANCE,
                       auth={"keys": [{"key": "key-eu-tenant", "tenant": "eu-co"},
                                      {"key": "key-us-tenant", "tenant": "us-co"},
                                      {"key": "key-admin-ops", "tenant": "ops", "admin": True}]},
                       tenants={"eu-co": {"region": "eu"}, "us-co": {"region": "us"}},
                       routing={"breaker": {"failures": 2, "cooldown_s": 30}, "retries": {"max": 0},
                                **extra.pop("routing", {})}, **extra)


def client(gw: Any, key: str = "key-us-tenant") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def answered_by(reply: Any) -> str:
    return reply.choices[0].message.content.split()[2]  # "Hello from NAME ..."


def explain(gw: Any, body: dict[str, Any], key: str = "key-us-tenant", **headers: str) -> dict[str, Any]:
    r = httpx.post(gw.url + "/v1/route/explain", json=body,
                   headers={"authorization": f"Bearer {key}", **headers}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def cloud_calls(fakes: Fakes) -> int:
    return sum(len(fakes.all[k].requests) for k in ("openai", "azure", "bedrock"))


def test_restricted_data_never_leaks_to_the_cloud_when_local_is_down(clean_fakes: Fakes, redis_server: Any,
                                                                      gateway_factory: Any) -> None:
    fakes = clean_fakes
    # panic routing off: this is the refusal path (with it on, the probes go to local only: tests/test_cooldown.py)
    breaker = {"failures": 2, "cooldown_s": 30, "panic_threshold": 0}
    gw = gateway_factory(cfg(fakes, redis_server.url, routing={"breaker": breaker}))
    c = client(gw)
    reply = c.chat.completions.create(model="assistant", messages=PROMPT, extra_headers={"X-Data-Class": "restricted"})
    assert answered_by(reply) == "ollama"
    fakes.ollama.fail("503", times=10)
    for _ in range(3):  # two failures open the breaker; then nothing compliant is healthy
        with pytest.raises(openai.APIStatusError) as info:
            c.chat.completions.create(model="assistant", messages=PROMPT, extra_headers={"X-Data-Class": "restricted"})
        assert info.value.status_code in (502, 503)
    assert info.value.status_code == 503 and info.value.code == "no_compliant_deployment"
    assert "circuit open" in info.value.message
    assert cloud_calls(fakes) == 0, "the cloud fakes' logs prove nothing was leaked"
    why = explain(gw, {"model": "assistant", "messages": PROMPT}, **{"X-Data-Class": "restricted"})
    verdicts = {c["deployment"]: (c["verdict"], c["rule"]) for c in why["considered"]}
    assert verdicts["local-ollama"] == ("excluded", "routing.breaker")
    assert all(verdicts[d][1].startswith("compliance.data_classes[restricted]")
               for d in ("cloud-openai", "cloud-azure", "cloud-bedrock"))
    assert why["chosen"] is None and why["denial"]["status"] == 503


def test_pii_escalates_to_open_weight_only(clean_fakes: Fakes, redis_server: Any, gateway_factory: Any) -> None:
    fakes = clean_fakes
    gw = gateway_factory(cfg(fakes, redis_server.url))
    ssn = [{"role": "user", "content": "my SSN is 536-22-1234, please help"}]
    assert answered_by(client(gw).chat.completions.create(model="assistant", messages=ssn)) == "ollama"
    assert cloud_calls(fakes) == 0
    card = [{"role": "user", "content": "card 4111 1111 1111 1111"}]
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(gw).chat.completions.create(model="assistant", messages=card)
    assert info.value.code == "pii_blocked" and "4111" not in info.value.message
    near_miss = [{"role": "user", "content": "order 4111 1111 1111 1112 is late"}]  # fails Luhn
    assert answered_by(client(gw).chat.completions.create(model="assistant", messages=near_miss)) == "openai"
    # an email is redacted before it leaves
    client(gw).chat.completions.create(model="assistant", messages=[{"role": "user", "content": "mail a@b.co now"}])
    sent = fakes.openai.requests[-1]["json"]["messages"][0]["content"]
    assert "a@b.co" not in sent and "[REDACTED:email]" in sent


def test_jurisdiction_rule_and_explain_reasons(clean_fakes: Fakes, redis_server: Any, gateway_factory: Any) -> None:
    fakes = clean_fakes
    gw = gateway_factory(cfg(fakes, redis_server.url, routing={"models": {"assistant": {"strategy": "priority"}}}))
    why = explain(gw, {"model": "assistant", "messages": PROMPT}, key="key-eu-tenant")
    verdicts = {c["deployment"]: c for c in why["considered"]}
    assert verdicts["cloud-bedrock"]["verdict"] == "excluded"
    assert "EU tenants' data does not go to Bedrock" in verdicts["cloud-bedrock"]["reason"]
    assert why["chosen"] == "cloud-openai" and why["order"][:2] == ["cloud-openai", "cloud-azure"]
    assert fakes.bedrock.requests == [] and fakes.openai.requests == [], "explain is a dry run"
    # lowering the class is refused unless the tenant may
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "assistant", "messages": PROMPT},
                   headers={"authorization": "Bearer key-eu-tenant", "x-data-class": "public"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "data_class_lowering_denied"


def test_fallback_on_429_and_5xx_follows_priority(clean_fakes: Fakes, redis_server: Any,
                                                  gateway_factory: Any) -> None:
    fakes = clean_fakes
    gw = gateway_factory(cfg(fakes, redis_server.url))
    c = client(gw)
    fakes.openai.fail("429", retry_after=30)
    raw = c.chat.completions.with_raw_response.create(model="assistant", messages=PROMPT,
                                                       extra_headers={"X-Task-Id": "fallback-job"})
    assert answered_by(raw.parse()) == "azure"
    fakes.azure.fail("500")
    # openai's breaker is open (429, retry-after 30), azure fails: bedrock is next in priority
    assert answered_by(c.chat.completions.create(model="assistant", messages=PROMPT,
                                                 extra_headers={"X-Task-Id": "fallback-job"})) == "bedrock"
    assert len(fakes.openai.requests) == 1, "the open breaker kept traffic off the rate-limited deployment"
    task = httpx.get(gw.url + "/v1/tasks/fallback-job", headers={"authorization": "Bearer key-us-tenant"}).json()
    assert (task["requests"], task["attempts"], task["failed_attempts"]) == (2, 4, 2)
    audit = httpx.get(gw.url + "/v1/audit", headers={"authorization": "Bearer key-admin-ops"})
    assert audit.status_code == 200


def test_breaker_state_is_shared_between_replicas(clean_fakes: Fakes, redis_server: Any,
                                                  gateway_factory: Any) -> None:
    fakes = clean_fakes
    config = cfg(fakes, redis_server.url)
    gw1, gw2 = gateway_factory(config), gateway_factory(config)
    fakes.openai.fail("429", retry_after=30)
    assert answered_by(client(gw1).chat.completions.create(model="assistant", messages=PROMPT)) == "azure"
    time.sleep(1.2)  # one health sync interval, with margin
    assert answered_by(client(gw2).chat.completions.create(model="assistant", messages=PROMPT)) == "azure"
    assert len(fakes.openai.requests) == 1, "replica 2 never tried the deployment replica 1 found rate-limited"


def test_latency_strategy_moves_traffic_to_the_faster_fake(clean_fakes: Fakes, redis_server: Any,
                                                           gateway_factory: Any) -> None:
    fakes = clean_fakes
    config = base_config(redis_server.url, [
        model_entry("fast-chat", fakes.params("openai"), id="slow-openai"),
        model_entry("fast-chat", fakes.params("vllm"), id="fast-vllm"),
    ], routing={"models": {"fast-chat": {"strategy": "latency", "alpha": 0.5}}})
    gw = gateway_factory(config)
    fakes.openai.delay = 0.15
    c = client(gw, "x")
    answers = [answered_by(c.chat.completions.create(model="fast-chat", messages=PROMPT)) for _ in range(12)]
    assert set(answers[:2]) == {"openai", "vllm"}, "each deployment is measured first"
    assert answers[4:] == ["vllm"] * 8


def test_hot_reload_moves_a_model_without_dropping_a_request(clean_fakes: Fakes, redis_server: Any,
                                                             gateway_factory: Any) -> None:
    fakes = clean_fakes
    config = base_config(redis_server.url, [model_entry("assistant", fakes.params("openai"))])
    gw = gateway_factory(config)
    c = client(gw, "x")
    answers: list[str] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                answers.append(answered_by(c.chat.completions.create(model="assistant", messages=PROMPT)))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        gw.write_config({**config, "model_list": [model_entry("assistant", fakes.params("azure"))]})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not answers or answers[-1] != "azure"):
            time.sleep(0.1)
        # a bad config is rejected and the good one keeps serving
        (gw.config_path).write_text("model_list: [oops\n")
        os.kill(gw.proc.pid, signal.SIGHUP)
        time.sleep(1.5)
    finally:
        stop.set()
        worker.join(10)
    assert errors == [], "no request was dropped"
    assert answers[0] == "openai" and answers[-1] == "azure"
    assert "azure" in answers and answers.index("azure") > 0
    assert "config reload rejected" in gw.log()


def test_audit_cli_reads_denials(clean_fakes: Fakes, redis_server: Any, gateway_factory: Any) -> None:
    fakes = clean_fakes
    gw = gateway_factory(cfg(fakes, redis_server.url))
    with pytest.raises(openai.PermissionDeniedError):
        client(gw).chat.completions.create(model="assistant", messages=[{"role": "user", "content": "4111111111111111"}],
                                           extra_headers={"X-Task-Id": "audited-job"})
    out = subprocess.run([sys.executable, "-m", "gateway", "audit", "--url", gw.url, "--key", "key-admin-ops",
                          "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    entries = yaml.safe_load(out.stdout)
    denial = next(e for e in entries if e["task_id"] == "audited-job")
    assert denial["kind"] == "denial" and denial["tenant"] == "us-co" and "pii" in denial["rule"]
    assert "4111" not in out.stdout, "the audit log never holds prompt text"
    # issue 14: a tenant key reads its own tenant's entries (and only those); it was refused before
    own = subprocess.run([sys.executable, "-m", "gateway", "audit", "--url", gw.url, "--key", "key-us-tenant",
                          "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert own.returncode == 0, own.stderr
    mine = yaml.safe_load(own.stdout)
    assert any(e["task_id"] == "audited-job" for e in mine) and {e["tenant"] for e in mine} == {"us-co"}
