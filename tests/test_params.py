"""The honest provider contract: a parameter that changes the answer is never dropped.

For every adapter and every answer-changing parameter (providers.canonical.ANSWER_PARAMS):
- declared supported (or passed through): the upstream request with the parameter
  differs from the one without it — it was honoured, not dropped;
- not declared: the routing decision refuses the request with 400
  ``unsupported_parameter`` naming it, and never schedules that deployment.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import orjson
import pytest

from policies.capabilities import model_facts
from policies.decide import Policies, RequestFacts, decide
from providers import ADAPTERS
from providers.base import ApiKey, AwsSigV4, Credentials, Deployment, GoogleServiceAccount, Secret
from providers.canonical import ANSWER_PARAMS, ChatRequest, params_in_use
from tests.fakes.google_sa import service_account_json

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
VALUES: dict[str, Any] = {
    "tools": TOOLS, "tool_choice": "required", "functions": [{"name": "f", "parameters": {}}],
    "function_call": {"name": "f"}, "response_format": {"type": "json_object"}, "seed": 7,
    "reasoning_effort": "high", "logprobs": True, "top_logprobs": 2, "n": 2, "logit_bias": {"50256": -100},
    "stop": ["END"], "temperature": 0.3, "top_p": 0.5, "max_tokens": 17, "max_completion_tokens": 17,
    "frequency_penalty": 0.5, "presence_penalty": 0.5, "parallel_tool_calls": False,
    "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"},
    "prediction": {"type": "content", "content": "x"}, "web_search_options": {}, "service_tier": "flex",
}
BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
KINDS = sorted(ADAPTERS)


def dep(kind: str) -> Deployment:
    creds: Credentials = (AwsSigV4("us-east-1", Secret("AKID"), Secret("secret")) if kind == "bedrock"
                          else GoogleServiceAccount(Secret(service_account_json()), "proj") if kind == "vertex_ai"
                          else ApiKey(Secret("k")))
    model = ("anthropic.claude-3-5-haiku-20241022-v1:0" if kind == "bedrock"
             else "gemini-2.0-flash" if kind == "vertex_ai" else "some-model")
    return Deployment("d", "m", kind, model, api_base="http://upstream/v1" if kind != "bedrock" else "http://br",
                      credentials=creds)


def test_every_sample_value_counts_as_in_use() -> None:
    assert set(VALUES) == ANSWER_PARAMS
    assert params_in_use({**BASE, **VALUES}) == ANSWER_PARAMS


def sent(kind: str, body: dict[str, Any]) -> Any:
    req = ADAPTERS[kind].chat_request(dep(kind), ChatRequest.of(body))
    return orjson.loads(req.body)


CASES = [(kind, param) for kind in KINDS for param in sorted(ANSWER_PARAMS)]


@pytest.mark.parametrize(("kind", "param"), CASES, ids=[f"{k}-{p}" for k, p in CASES])
def test_a_parameter_is_honoured_or_refused_never_dropped(kind: str, param: str) -> None:
    adapter = ADAPTERS[kind]
    context = {"tools": TOOLS} if param in ("tool_choice", "parallel_tool_calls") else {}
    context |= {"logprobs": True} if param == "top_logprobs" else {}
    with_param = {**BASE, **context, param: VALUES[param]}
    supported = adapter.supported_params
    if supported is None or param in supported:
        assert sent(kind, with_param) != sent(kind, {**BASE, **context}), f"{kind} dropped {param}"
        if supported is None:
            assert sent(kind, with_param)[param] == VALUES[param], "passed through as sent"
        return
    d = dep(kind)
    decision = decide(RequestFacts("t", "m", with_param, params=params_in_use(with_param)), [d], Policies(), {}, {},
                      {}, 0.0, 0.5, {d.id: model_facts(d, None, supported)})
    assert decision.ordered == ()
    assert decision.denial is not None and decision.denial.code == "unsupported_parameter"
    assert decision.denial.status == 400 and param in decision.denial.message


@pytest.mark.parametrize("kind", KINDS)
def test_neutral_values_need_no_support(kind: str) -> None:
    neutral = {**BASE, "n": 1, "logprobs": False, "tool_choice": "auto", "parallel_tool_calls": True,
               "response_format": {"type": "text"}, "service_tier": "auto", "modalities": ["text"]}
    assert params_in_use(neutral) == frozenset()
    ADAPTERS[kind].chat_request(dep(kind), ChatRequest.of(neutral))  # builds without refusing


def test_adapters_declare_their_contract() -> None:
    for kind, adapter in ADAPTERS.items():
        assert isinstance(adapter.required_params, tuple), kind
        assert adapter.supported_params is None or adapter.supported_params <= ANSWER_PARAMS, kind
        assert not hasattr(adapter, "stream_content_type"), "a dead member is gone"
        creds = adapter.credentials({"api_key": "k", "aws_region_name": "r", "aws_access_key_id": "a",
                                     "aws_secret_access_key": "s"})
        assert isinstance(creds, (ApiKey, AwsSigV4, GoogleServiceAccount))
    assert "aws_access_key_id" not in Deployment.__dataclass_fields__, "only Bedrock's credentials carry AWS keys"
    assert MappingProxyType is not None
