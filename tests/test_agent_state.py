"""Responses and Messages on the shared path: stored responses per tenant with retention, PII in
the new input shapes, agent clients' session ids as task ids, and streaming without buffering."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Fakes, base_config, model_entry
from tests.test_policy_e2e import COMPLIANCE

KEYS = {"keys": [{"key": "key-tenant-a", "tenant": "a"}, {"key": "key-tenant-b", "tenant": "b"}]}


def oai(gw: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def claude(gw: Any, key: str = "key-tenant-a") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=20)


def test_stored_responses_are_tenant_isolated_and_expire(clean_fakes: Fakes, redis_server: Any,
                                                         gateway_factory: Any) -> None:
    config = base_config(redis_server.url, [model_entry("m", clean_fakes.params("openai"))], auth=KEYS,
                         server={"responses_retention_s": 2})
    gw = gateway_factory(config)
    a, b = oai(gw, "key-tenant-a"), oai(gw, "key-tenant-b")
    reply = a.responses.create(model="m", input="hello")
    assert a.responses.retrieve(reply.id).id == reply.id
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.create(model="m", input="go on", previous_response_id=reply.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.delete(reply.id)
    assert a.responses.create(model="m", input="go on", previous_response_id=reply.id).status == "completed"
    with pytest.raises(openai.AuthenticationError):
        oai(gw, "wrong-key-000").responses.retrieve(reply.id)
    time.sleep(2.5)  # server.responses_retention_s
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(reply.id)


def test_pii_is_read_in_tool_results_items_and_system_prompts(clean_fakes: Fakes, redis_server: Any,
                                                              gateway_factory: Any) -> None:
    fakes = clean_fakes
    config = base_config(redis_server.url, [model_entry("m", fakes.params("openai"), region="us")],
                         compliance=COMPLIANCE, auth=KEYS)
    gw = gateway_factory(config)
    card = "card 4111 1111 1111 1111"
    turns = [{"role": "user", "content": "look it up"},
             {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": card}]}]
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        claude(gw).messages.create(model="m", max_tokens=50, messages=turns)
    assert denied.value.body["error"]["type"] == "permission_error" and "4111" not in str(denied.value.body)
    with pytest.raises(openai.PermissionDeniedError):
        oai(gw, "key-tenant-a").responses.create(model="m", input=[
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": card}])
    assert fakes.openai.requests == []
    # an email in a Messages system prompt is redacted before it leaves
    claude(gw).messages.create(model="m", max_tokens=50, system=[{"type": "text", "text": "mail a@b.co now"}],
                               messages=[{"role": "user", "content": "hi"}])
    assert "a@b.co" not in json.dumps(fakes.openai.requests[-1]["json"])


@pytest.mark.parametrize("headers,metadata,expected", [
    ({"X-Task-Id": "explicit", "x-claude-code-session-id": "cc"}, None, "explicit"),
    ({"x-claude-code-session-id": "cc", "session-id": "codex"}, None, "cc"),
    ({"session-id": "codex"}, {"user_id": '{"device_id":"d","session_id":"from-user-id"}'}, "from-user-id"),
    ({}, {"user_id": "user_abc_account_1234_session_0b1c-22"}, "0b1c-22"),
    ({"session-id": "codex", "session_id": "codex-old", "x-session-id": "generic"}, None, "codex"),
    ({"session_id": "codex-old", "x-session-id": "generic"}, None, "codex-old"),
    ({"x-session-id": "generic"}, {"user_id": "plain-user"}, "generic"),
])
def test_agent_session_ids_are_task_ids(clean_fakes: Fakes, redis_server: Any, gateway_factory: Any,
                                        headers: dict[str, str], metadata: dict[str, str] | None,
                                        expected: str) -> None:
    gw = gateway_factory(base_config(redis_server.url, [model_entry("m", clean_fakes.params("openai"))]))
    extra = {"metadata": metadata} if metadata else {}
    raw = claude(gw, "x").messages.with_raw_response.create(
        model="m", max_tokens=50, messages=[{"role": "user", "content": "hi"}], extra_headers=headers, **extra)
    assert raw.headers["x-task-id"] == expected
    assert "metadata" not in clean_fakes.openai.requests[-1]["json"]


@pytest.mark.parametrize("kind", ["openai", "bedrock"])
def test_first_translated_delta_arrives_before_the_upstream_ends(clean_fakes: Fakes, redis_server: Any,
                                                                 gateway_factory: Any, kind: str) -> None:
    fake = clean_fakes.all[kind]
    gw = gateway_factory(base_config(redis_server.url, [model_entry("m", clean_fakes.params(kind))]))
    fake.chunk_delay = 0.25  # between streamed words: 7 words, ~1.5 s in all
    try:
        for api in ("responses", "messages"):
            t0 = time.monotonic()
            first = None
            if api == "responses":
                for ev in oai(gw, "x").responses.create(model="m", input="hi", stream=True):
                    if ev.type == "response.output_text.delta" and first is None:
                        first = time.monotonic() - t0
            else:
                with claude(gw, "x").messages.stream(model="m", max_tokens=50,
                                                     messages=[{"role": "user", "content": "hi"}]) as stream:
                    for ev in stream:
                        if ev.type == "content_block_delta" and first is None:
                            first = time.monotonic() - t0
            total = time.monotonic() - t0
            assert first is not None and total >= 1.4
            assert first < total - 1.0, (api, first, total)  # the rest of the words were still on their way
    finally:
        fake.chunk_delay = 0.0


def test_responses_input_validation_is_openai_shaped(clean_fakes: Fakes, redis_server: Any,
                                                     gateway_factory: Any) -> None:
    gw = gateway_factory(base_config(redis_server.url, [model_entry("m", clean_fakes.params("openai"))]))
    for body in ({"model": "m"}, {"model": "m", "input": 5}, {"model": "m", "input": [{"type": "file_search_call"}]},
                 {"model": "m", "input": "x", "max_output_tokens": "ten"}, {"model": "m", "input": "x",
                                                                           "previous_response_id": 3}):
        r = httpx.post(f"{gw.url}/v1/responses", json=body, timeout=10)
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    for body in ({"model": "m", "max_tokens": 5, "messages": "hi"},
                 {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]},
                 {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{}]}):
        r = httpx.post(f"{gw.url}/v1/messages", json=body, timeout=10)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"


def test_redaction_turns_the_anthropic_pass_through_into_a_translation(clean_fakes: Fakes, redis_server: Any,
                                                                       gateway_factory: Any) -> None:
    """The client's own body is never sent when policy changed what goes upstream."""
    fakes = clean_fakes
    config = base_config(redis_server.url, [model_entry("m", fakes.params("anthropic"), region="us")],
                         compliance=COMPLIANCE, auth=KEYS)
    gw = gateway_factory(config)
    reply = claude(gw).messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": "mail a@b.co"}])
    assert reply.content[0].text == "Hello from anthropic the answer is 42."
    sent = fakes.anthropic.requests[-1]["json"]
    assert "a@b.co" not in json.dumps(sent) and sent["messages"][0]["content"][0]["type"] == "text"
    assert reply.model == "m"  # encoded by the gateway, not the upstream's bytes
    plain = claude(gw).messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": "hello"}])
    assert fakes.anthropic.requests[-1]["json"]["messages"] == [{"role": "user", "content": "hello"}]  # as sent
    assert plain.model != "m"
