"""LiteLLM's wildcards: ``model_name: "*"`` and ``"provider/*"`` pass the client's model through to
the provider, priced by the model the client asked for."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from gateway.config.load import parse
from gateway.config.wildcards import resolve
from tests.conftest import Fakes, base_config, model_entry

PROMPT = [{"role": "user", "content": "What is the answer?"}]


def test_patterns_and_specificity() -> None:
    c = parse("""
model_list:
  - {model_name: "*", litellm_params: {model: "openai/*", api_key: k}}
  - {model_name: "groq/*", litellm_params: {model: "groq/*", api_key: g}}
  - {model_name: "fixed", litellm_params: {model: openai/gpt-4o, api_key: k}}
""", "t.yaml", {})
    assert set(c.groups) == {"fixed"}  # no literal "*" model
    (dep,), _ = resolve(c.wildcards, "gpt-4.1")
    assert (dep.kind, dep.model, dep.model_name, dep.id) == ("openai", "gpt-4.1", "gpt-4.1", "*#0:gpt-4.1")
    (dep,), _ = resolve(c.wildcards, "groq/llama-3.1-8b-instant")  # the more specific pattern wins
    assert (dep.kind, dep.model) == ("groq", "llama-3.1-8b-instant")


def test_a_wildcard_whose_kind_cannot_serve_says_why() -> None:
    c = parse('model_list:\n  - {model_name: "*", litellm_params: {model: "*"}}\n', "t.yaml", {})
    deps, reasons = resolve(c.wildcards, "gpt-4o")  # bare: OpenAI's, and its key is not set
    assert deps == () and "OPENAI_API_KEY" in reasons[0]
    deps, reasons = resolve(c.wildcards, "sagemaker/ep")
    assert deps == () and "SageMaker" in reasons[0]


def map_cost(model: str, usage: dict[str, int]) -> Decimal:
    import litellm

    entry = litellm.model_cost[model]
    return (Decimal(str(entry["input_cost_per_token"])) * usage["prompt_tokens"]
            + Decimal(str(entry["output_cost_per_token"])) * usage["completion_tokens"])


@pytest.mark.parametrize("pattern,asked,upstream", [("*", "gpt-4o", "gpt-4o"), ("*", "gpt-4o-mini", "gpt-4o-mini"),
                                                    ("openai/*", "openai/gpt-4o", "gpt-4o")])
def test_the_client_model_goes_through_and_is_priced_by_it(clean_fakes: Fakes, redis_server: Any,
                                                           gateway_factory: Any, pattern: str, asked: str,
                                                           upstream: str) -> None:
    params = {"model": "openai/*", "api_base": clean_fakes.openai.url + "/v1", "api_key": "sk-fake"}
    gw = gateway_factory(base_config(redis_server.url, [model_entry(pattern, params)]))
    with httpx.Client(base_url=gw.url, timeout=20) as client:
        r = client.post("/v1/chat/completions", json={"model": asked, "messages": PROMPT})
        assert r.status_code == 200, r.text
        assert clean_fakes.openai.requests[-1]["json"]["model"] == upstream
        cost = Decimal(r.headers["x-request-cost-usd"])
        assert cost > 0 and abs(cost - map_cost(upstream, r.json()["usage"])) < Decimal("1e-9")
        if pattern != "*":
            missing = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": PROMPT})
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
