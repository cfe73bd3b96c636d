"""The hosted OpenAI-compatible providers (providers/hosted.py): one table, one adapter.

- The table matches the pinned litellm: the same default base URL and key variable.
- Each entry, end to end: the openai SDK -> a real `taskgate serve` -> a strict fake of
  its own, served at the provider's own path and accepting only that provider's key,
  which the gateway read from LiteLLM's environment variable for it.
"""

from __future__ import annotations

import os
from typing import Any, Iterator
from urllib.parse import urlparse

import openai
import pytest

from providers import ADAPTERS
from providers.base import ApiKey, Deployment, Secret
from providers.environment import env_defaults
from providers.hosted import HOSTED, HOSTED_BY_KIND
from tests import wire
from tests.conftest import GatewayProcess, base_config, model_entry
from tests.fakes import OpenAIFake

KINDS = [h.kind for h in HOSTED]
REQUIRED = {"groq", "mistral", "openrouter", "together_ai", "deepseek", "fireworks_ai", "xai", "perplexity",
            "cerebras", "deepinfra", "nvidia_nim", "lm_studio", "llamafile", "openai_like"}


def test_the_table_covers_the_issue_and_every_entry_is_registered() -> None:
    assert REQUIRED <= set(KINDS)
    assert all(kind in ADAPTERS for kind in KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_default_base_and_key_variable_match_litellm(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import litellm

    hosted = HOSTED_BY_KIND[kind]
    for name in hosted.key_env:
        monkeypatch.setenv(name, f"key-{kind}")
    _, provider, key, base = litellm.get_llm_provider(f"{kind}/some-model")
    assert provider == kind
    if base is not None:  # openrouter's default is applied later, in litellm.main (checked below)
        assert base == hosted.base
    if key is not None:
        assert key == f"key-{kind}" and hosted.key_env
    if kind == "openrouter":
        assert hosted.base == "https://openrouter.ai/api/v1" and hosted.key_env[0] == "OPENROUTER_API_KEY"


@pytest.mark.parametrize("kind", [h.kind for h in HOSTED if h.base])
def test_url_and_auth_without_api_base(kind: str) -> None:
    dep = Deployment("d", "m", kind, "some-model", credentials=ApiKey(Secret("k-1")))
    req = wire.chat_request(ADAPTERS[kind], dep, {"model": "m", "messages": [{"role": "user", "content": "x"}]},
                            False)
    assert req.url == f"{HOSTED_BY_KIND[kind].base}/chat/completions"
    assert req.headers["Authorization"] == "Bearer k-1"


def test_env_defaults() -> None:
    assert env_defaults("groq", {"model": "groq/x"}, {"GROQ_API_KEY": "g"}) == ({"model": "groq/x", "api_key": "g"},
                                                                                 None)
    assert env_defaults("groq", {"model": "groq/x"}, {})[1] == "GROQ_API_KEY"
    assert env_defaults("together_ai", {}, {"TOGETHER_AI_TOKEN": "t"})[0]["api_key"] == "t"  # any of LiteLLM's names
    assert env_defaults("groq", {"api_key": "own"}, {"GROQ_API_KEY": "g"})[0]["api_key"] == "own"  # config wins
    assert env_defaults("lm_studio", {}, {"LM_STUDIO_API_BASE": "http://h/v1"}) == ({"api_base": "http://h/v1"}, None)
    assert env_defaults("llamafile", {}, {}) == ({}, None)  # local: no key needed
    assert env_defaults("gemini", {}, {"GEMINI_API_KEY": "g"})[0]["api_key"] == "g"
    assert env_defaults("vertex_ai", {"vertex_credentials": "{}"}, {})[1] == "VERTEXAI_PROJECT or VERTEX_PROJECT"
    assert env_defaults("anthropic", {}, {"ANTHROPIC_API_KEY": "a"})[0]["api_key"] == "a"
    assert env_defaults("bedrock", {"aws_region_name": "us-east-1"}, {})[1] == "AWS_ACCESS_KEY_ID"


# --- end to end --------------------------------------------------------------------------------


def fake_prefix(kind: str) -> str:
    base = HOSTED_BY_KIND[kind].base
    return urlparse(base).path if base else "/v1"


@pytest.fixture(scope="module")
def hosted(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, dict]]:
    fakes = {kind: OpenAIFake(name=kind, api_key=f"key-{kind}", prefix=fake_prefix(kind)) for kind in KINDS}
    env: dict[str, str] = {}
    models = []
    for kind, fake in fakes.items():
        fake.start()
        hosted = HOSTED_BY_KIND[kind]
        params: dict[str, Any] = {"model": f"{kind}/gpt-4o-mini"}
        if hosted.key_env:
            env[hosted.key_env[0]] = f"key-{kind}"  # the key comes from LiteLLM's variable for the provider
        else:
            params["api_key"] = f"key-{kind}"
        if hosted.base_env and kind in ("groq", "lm_studio"):
            env[hosted.base_env[0]] = fake.url + fake_prefix(kind)  # ... and the base from its variable
        else:
            params["api_base"] = fake.url + fake_prefix(kind)
        models.append(model_entry(f"chat-{kind}", params))
    for name in [n for h in HOSTED for n in (*h.key_env, *h.base_env) if n in os.environ and n not in env]:
        env[name] = ""  # nothing from the test runner's own environment
    gw = GatewayProcess(base_config(redis_server.url, models), tmp_path_factory.mktemp("hosted"), env=env)
    gw.start()
    yield gw, fakes
    gw.stop()
    for fake in fakes.values():
        fake.stop()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_each_provider_against_its_strict_fake(hosted: tuple[GatewayProcess, dict], kind: str, stream: bool) -> None:
    gw, fakes = hosted
    fake = fakes[kind]
    fake.reset()
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="none", max_retries=0, timeout=20)
    messages: Any = [{"role": "user", "content": "What is the answer?"}]
    if stream:
        chunks = list(client.chat.completions.create(model=f"chat-{kind}", messages=messages, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        raw = client.chat.completions.with_raw_response.create(model=f"chat-{kind}", messages=messages)
        text = raw.parse().choices[0].message.content or ""
        assert raw.headers.get("x-request-cost-usd") is not None
    assert text
    (req,) = fake.requests
    assert req["path"] == fake_prefix(kind) + "/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer key-{kind}"
    assert req["json"]["model"] == "gpt-4o-mini"
