"""No secret fragment anywhere: canary secrets are planted in a config (upstream keys, AWS keys, a
password in an api_base, the gateway's own keys) and a fake upstream echoes a masked key in its 401,
as OpenAI does ("Incorrect API key provided: sk-**********WXYZ"). Every output is then searched
for each canary and for its last four characters: response bodies and headers (success, upstream
401, connection refused to a URL with userinfo), explain, /metrics, /ui, /openapi.json, the task
API, `taskgate check`, the process log, and every key and value in the store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import yaml

from providers.redact import scrub, strip_userinfo
from tests.conftest import base_config, free_port, model_entry
from tests.fakes.openai_fake import OpenAIFake

GOOD_KEY = "sk-canary-good-upstream-QJZV"
BAD_KEY = "sk-canary-bad-upstream-XKWQ"
AWS_ID = "AKIACANARYIDPZXQ"
AWS_SECRET = "canary-aws-secret-JVQZ"
URL_PASSWORD = "canaryPassWQXJ"
ADMIN_KEY = "sk-canary-gateway-admin-ZQKV"
USER_KEY = "sk-canary-gateway-user-VXQJ"
CANARIES = (GOOD_KEY, BAD_KEY, AWS_ID, AWS_SECRET, URL_PASSWORD, ADMIN_KEY, USER_KEY)


def _leaks(text: str) -> list[str]:
    found = []
    for canary in CANARIES:
        for fragment in (canary, canary[-4:], canary[-6:], canary[:12]):
            if fragment in text:
                found.append(f"{fragment!r} (of {canary[:6]}...)")
    return found


@pytest.mark.parametrize(("text", "secrets", "gone"), [
    ("Incorrect API key provided: sk-**********XKWQ. You can find your API key at https://platform.openai.com.",
     [BAD_KEY], ["XKWQ"]),
    ("key ending in XKWQ is not valid", [BAD_KEY], ["XKWQ"]),
    ("Incorrect API key provided: sk-proj-abc...wxyz", [], ["wxyz"]),
    (f"cannot connect to http://user:{URL_PASSWORD}@10.0.0.1:8080/v1", [], [URL_PASSWORD, "user:"]),
    (f"The security token {AWS_ID} is invalid", [], [AWS_ID]),
    (f"signature of {AWS_SECRET} does not match", [AWS_SECRET], ["JVQZ"]),
    ("Authorization: Bearer eyJhbGciOi.payload", [], ["eyJhbGciOi"]),
])
def test_scrub_removes_every_fragment(text: str, secrets: list[str], gone: list[str]) -> None:
    out = scrub(text, secrets)
    for fragment in gone:
        assert fragment not in out, out


@pytest.mark.parametrize("text", [
    "The model `gpt-4o-mini` does not exist or you do not have access to it.",
    "max_tokens is too large: 100000. This model supports at most 16384 completion tokens.",
    "Rate limit reached for gpt-4o-mini in organization org-abc on tokens per min (TPM): Limit 200000.",
])
def test_scrub_keeps_ordinary_messages(text: str) -> None:
    assert scrub(text, [BAD_KEY]) == text


def test_strip_userinfo_keeps_the_host() -> None:
    assert strip_userinfo("see http://u:p@host:1/x and redis://:pw@r:6379/0") == \
        "see http://***@host:1/x and redis://***@r:6379/0"


def test_no_output_carries_a_secret_fragment(redis_server: Any, gateway_factory: Any, tmp_path: Path) -> None:
    fake = OpenAIFake(api_key=GOOD_KEY)
    fake.start()
    try:
        refused = free_port()
        models = [
            model_entry("good", {"model": "openai/gpt-4o-mini", "api_base": fake.url + "/v1", "api_key": GOOD_KEY}),
            model_entry("bad", {"model": "openai/gpt-4o-mini", "api_base": fake.url + "/v1", "api_key": BAD_KEY,
                                "max_retries": 0}),
            model_entry("down", {"model": "openai/gpt-4o-mini", "max_retries": 0,
                                 "api_base": f"http://canaryuser:{URL_PASSWORD}@127.0.0.1:{refused}/v1"}),
            model_entry("aws", {"model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0",
                                "aws_region_name": "us-east-1", "aws_access_key_id": AWS_ID,
                                "aws_secret_access_key": AWS_SECRET}),
        ]
        keys = [{"key": ADMIN_KEY, "tenant": "ops", "admin": True}, {"key": USER_KEY, "tenant": "team"}]
        config = base_config(redis_server.url, models, auth={"keys": keys})
        gw = gateway_factory(config)
        outputs: dict[str, str] = {}

        def record(name: str, response: httpx.Response) -> None:
            outputs[name] = f"{response.status_code} {dict(response.headers)} {response.text}"

        user = {"Authorization": f"Bearer {USER_KEY}"}
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        for model in ("good", "bad", "down"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            record(f"chat {model}", httpx.post(gw.url + "/v1/chat/completions", json=body,
                                               headers={**user, "X-Task-Id": f"canary-{model}"}, timeout=30))
            record(f"stream {model}", httpx.post(gw.url + "/v1/chat/completions", json={**body, "stream": True},
                                                 headers=user, timeout=30))
            record(f"messages {model}", httpx.post(gw.url + "/v1/messages", timeout=30, headers={"x-api-key": USER_KEY},
                                                   json={**body, "max_tokens": 10}))
        assert outputs["chat good"].startswith("200"), outputs["chat good"]
        assert outputs["chat bad"].startswith("502") and "upstream_auth_failed" in outputs["chat bad"]
        assert outputs["chat down"].startswith("502") and "cannot connect" in outputs["chat down"]
        record("wrong key", httpx.post(gw.url + "/v1/chat/completions", json={"model": "good", "messages": []},
                                       headers={"Authorization": f"Bearer {ADMIN_KEY}x"}, timeout=10))
        for model in ("good", "down", "aws"):
            record(f"explain {model}", httpx.post(gw.url + "/v1/route/explain", headers=admin, timeout=10,
                                                  json={"model": model, "messages": [{"role": "user", "content": "x"}]}))
        for path in ("/metrics", "/ui", "/ui/api/context", "/openapi.json", "/v1/models", "/v1/tasks",
                     "/v1/tasks/canary-bad?include=attempts", "/v1/tasks/canary-down?include=attempts",
                     "/v1/reports/tasks", "/v1/audit"):
            record(path, httpx.get(gw.url + path, headers=admin, timeout=10))
        check = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(gw.config_path)],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr
        outputs["taskgate check"] = check.stdout + check.stderr
        broken = tmp_path / "broken.yaml"
        broken.write_text(yaml.safe_dump({**config, "store": {"url": f"http://u:{URL_PASSWORD}@h:1"}}))
        bad_check = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(broken)],
                                   capture_output=True, text=True, timeout=60)
        assert bad_check.returncode != 0 and "store.url" in bad_check.stderr
        outputs["taskgate check (invalid)"] = bad_check.stdout + bad_check.stderr
        gw.stop()  # the log is complete once the process has flushed and exited
        outputs["process log"] = gw.log()
        assert "deployment bad#0 failed" in outputs["process log"], "the upstream 401 was logged (scrubbed)"
        outputs["store"] = _dump_store(config["store"]["url"])
        assert "canary-bad" in outputs["store"], "the scan reads the gateway's store"
        leaks = {name: found for name, text in outputs.items() if (found := _leaks(text))}
        assert not leaks, leaks
    finally:
        fake.stop()


def _dump_store(url: str) -> str:
    """Every key and every value, of every type, in the gateway's Redis DB."""
    parts = urlsplit(url)
    client = redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=int(parts.path[1:] or 0))
    out: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = kind
        out.append(f"{key!r} {value!r}")
    client.close()
    return "\n".join(out)
