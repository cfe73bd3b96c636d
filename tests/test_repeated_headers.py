"""A header sent twice never means "the last one wins".

HTTP combines repeated header fields into one comma-separated value (RFC 9110,
5.3). Every header the gateway acts on takes one value, so a combined value is
refused where it is read. The reproduction this guards: ``X-Data-Class`` sent
twice, ``restricted`` then ``public``, with the local deployment down, reached a
cloud deployment. Sent over real HTTP (http.client keeps both header lines).
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Fakes
from tests.test_policy_e2e import cfg, cloud_calls

BODY = json.dumps({"model": "assistant", "messages": [{"role": "user", "content": "hello"}]})


def post(url: str, headers: list[tuple[str, str]], path: str = "/v1/chat/completions") -> tuple[int, dict[str, Any]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        conn.putrequest("POST", path)
        for name, value in [("Content-Type", "application/json"), ("Content-Length", str(len(BODY))), *headers]:
            conn.putheader(name, value)
        conn.endheaders(BODY.encode())
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


US_KEY = ("Authorization", "Bearer key-us-tenant")


@pytest.fixture(scope="module")
def gw(fakes: Fakes, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import GatewayProcess

    proc = GatewayProcess(cfg(fakes, redis_server.url), tmp_path_factory.mktemp("repeated"))
    proc.start()
    yield proc
    proc.stop()


@pytest.mark.parametrize("order", [("restricted", "public"), ("public", "restricted"), ("internal", "public")])
def test_repeated_data_class_never_reaches_the_cloud(gw: Any, clean_fakes: Fakes, order: tuple[str, str]) -> None:
    clean_fakes.ollama.fail("503", times=100)  # the local deployment is down
    status, body = post(gw.url, [US_KEY, ("X-Data-Class", order[0]), ("X-Data-Class", order[1])])
    assert status == 400 and body["error"]["code"] == "unknown_data_class", body
    assert cloud_calls(clean_fakes) == 0


def test_one_combined_data_class_header_is_refused_too(gw: Any, clean_fakes: Fakes) -> None:
    status, body = post(gw.url, [US_KEY, ("X-Data-Class", "restricted, public")])
    assert status == 400 and cloud_calls(clean_fakes) == 0


@pytest.mark.parametrize(("name", "values", "status", "code"), [
    ("X-Task-Id", ("task-a", "task-b"), 400, "invalid_task_id"),
    ("X-Task-Type", ("triage", "other"), 400, "invalid_task_type"),
    ("X-Task-Budget-USD", ("100", "50"), 400, "invalid_budget"),
    ("x-litellm-trace-id", ("t1", "t2"), 400, "invalid_task_id"),
    ("Authorization", ("Bearer key-eu-tenant", "Bearer key-us-tenant"), 401, "invalid_api_key"),
    ("x-api-key", ("key-eu-tenant", "key-us-tenant"), 401, "invalid_api_key"),
    ("x-api-key", ("key-us-tenant", "key-us-tenant"), 401, "invalid_api_key"),  # even the same key twice
])
def test_every_header_the_gateway_acts_on_refuses_a_repeat(gw: Any, clean_fakes: Fakes, name: str,
                                                            values: tuple[str, str], status: int, code: str) -> None:
    headers = [] if name in ("Authorization", "x-api-key") else [US_KEY]
    got, body = post(gw.url, [*headers, (name, values[0]), (name, values[1])])
    assert (got, body["error"]["code"]) == (status, code), body
    assert cloud_calls(clean_fakes) == 0 and not clean_fakes.ollama.requests
    for value in values:  # each one alone is fine
        alone = [] if name in ("Authorization", "x-api-key") else [US_KEY]
        ok, _ = post(gw.url, [*alone, (name, value)])
        assert ok == 200
