"""Switching providers is a config change: the same client code, a different fake answers."""

from __future__ import annotations

from typing import Any

import openai

from tests.conftest import Fakes, base_config, model_entry


def ask(client: openai.OpenAI) -> tuple[str, str]:
    """The application's code: identical for every provider."""
    reply = client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "hi there"}])
    stream = client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "hi"}],
                                            stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    return reply.choices[0].message.content or "", streamed


def test_same_client_code_reaches_each_provider_after_a_config_edit(
    clean_fakes: Fakes, redis_server: Any, gateway_factory: Any
) -> None:
    fakes = clean_fakes
    gw = gateway_factory(base_config(redis_server.url, [model_entry("assistant", fakes.params("openai"))]))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    for kind in ["openai", "azure", "bedrock", "ollama", "vllm"]:
        gw.write_config(base_config(redis_server.url, [model_entry("assistant", fakes.params(kind))]))
        gw.restart()
        before = {k: f.billed.requests for k, f in fakes.all.items()}
        expected = f"Hello from {kind} the answer is 42."
        assert ask(client) == (expected, expected)
        after = {k: f.billed.requests for k, f in fakes.all.items()}
        assert {k for k in after if after[k] != before[k]} == {kind}, "only the configured provider was called"
