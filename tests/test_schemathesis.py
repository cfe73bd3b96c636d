"""A bounded schemathesis run against a real ``taskgate serve`` on loopback, behind a fake
OpenAI upstream: no operation answers 5xx, and every response (each 4xx included) matches
the documented status codes, content types and schemas (/openapi.json), so every error is in
the documented error shape.

Bounded and deterministic: a fixed seed (``derandomize``), a few examples per operation, no
deadline. The whole module takes well under a minute.
"""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import base_config, model_entry
from tests.fakes.openai_fake import OpenAIFake

ADMIN_KEY = "sk-admin-schemathesis-0001"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def served(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import GatewayProcess

    fake = OpenAIFake(api_key="sk-upstream-schemathesis")
    fake.start()
    models = [model_entry("gpt-4o-mini", {"model": "openai/gpt-4o-mini", "api_base": fake.url + "/v1",
                                          "api_key": "sk-upstream-schemathesis", "max_retries": 0}),
              model_entry("demo", {"model": "demo/taskgate-demo", "input_cost_per_token": 0.000001,
                                   "output_cost_per_token": 0.000002})]
    config = base_config(redis_server.url, models, auth={"keys": [{"key": ADMIN_KEY, "tenant": "t1", "admin": True}]})
    gw = GatewayProcess(config, tmp_path_factory.mktemp("schemathesis")).start()
    try:
        yield gw.url
    finally:
        gw.stop()
        fake.stop()


def test_every_operation_conforms(served: str) -> None:
    """Each operation: MAX_EXAMPLES generated cases, each checked; every failure is listed at the end."""
    api = schemathesis.openapi.from_url(served + "/openapi.json").include(path_regex="^/(v1/|healthz|readyz|metrics)")
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    failures: list[str] = []
    ran = 0
    for result in api.get_all_operations():
        operation = result.ok()

        @given(operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case: Any) -> None:
            case.call_and_validate(base_url=served, headers=headers, checks=CHECKS, timeout=20)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collected: one operation's finding must not hide another's
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
        ran += 1
    assert ran >= 15, ran
    assert not failures, "\n\n".join(dict.fromkeys(failures))


def test_the_document_is_openapi_31_and_names_the_hot_path(served: str) -> None:
    doc = httpx.get(served + "/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/responses/{response_id}",
                 "/v1/messages", "/v1/messages/count_tokens", "/v1/route/explain", "/v1/tasks", "/healthz",
                 "/readyz", "/metrics", "/ui", "/v1/models"):
        assert path in doc["paths"], path
    assert set(doc["paths"]["/v1/responses/{response_id}"]) == {"get", "delete"}
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["responses"]["4XX"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/OpenAIError"}
    assert "X-Request-Cost-USD" in chat["responses"]["200"]["headers"]
    messages = doc["paths"]["/v1/messages"]["post"]
    assert messages["responses"]["5XX"]["content"]["application/json"]["schema"]["$ref"].endswith("AnthropicError")
    headers = {p["$ref"].rsplit("/", 1)[1] for p in chat["parameters"]}
    assert headers == {"TaskId", "TaskType", "DataClass", "TaskBudget"}
    assert {"bearer", "apiKey"} <= set(doc["components"]["securitySchemes"])
    # every 4xx/5xx of every operation is a documented error shape (bar /readyz's 503)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for code, response in op["responses"].items():
                if code[0] in "45" and path not in ("/healthz", "/readyz"):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.rsplit("/", 1)[1] in ("OpenAIError", "AnthropicError"), (path, method, code)
    # FastAPI's docs UI stays off
    assert httpx.get(served + "/docs", timeout=10).status_code == 404
    assert httpx.get(served + "/redoc", timeout=10).status_code == 404
