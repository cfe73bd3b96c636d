"""Real LiteLLM Proxy configs, written by others, load as they are; a master_key is enforced.

tests/litellm_corpus/ holds each file unchanged below a header naming its source
(repository and path). Loading never rejects them: a deployment Taskgate cannot
serve, or whose environment variable is unset, loads disabled with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.config.load import load
from tests.conftest import _next_db

CORPUS = sorted((Path(__file__).parent / "litellm_corpus").glob("*.yaml"))
MASTER = "sk-corpus-master-key"
ENV = {"LITELLM_MASTER_KEY": MASTER}


def raw(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def test_the_corpus_has_at_least_six_configs_each_with_its_source() -> None:
    assert len(CORPUS) >= 6
    for path in CORPUS:
        head = path.read_text().splitlines()[0]
        assert head.startswith("# Source: https://github.com/"), path.name


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_each_config_loads_as_it_is(path: Path) -> None:
    config = load(path, env=ENV)
    data = raw(path)
    entries = data.get("model_list") or []
    assert len(config.deployments) + len(config.disabled) + len(config.wildcards) == len(entries)
    for off in config.disabled:  # every deployment that is off says why
        assert off.reason
    master = (data.get("general_settings") or {}).get("master_key")
    if master is not None:
        assert config.auth_enabled and config.key_tenant(MASTER).admin
    else:
        assert not config.auth_enabled
    for section in ("litellm_settings", "general_settings", "router_settings"):
        for key in (data.get(section) or {}):  # every LiteLLM key is honoured or listed
            listed = any(n.key.startswith(f"{section}.{key}") for n in config.notes)
            assert listed or key in ("master_key", "num_retries", "fallbacks", "context_window_fallbacks",
                                     "request_timeout", "timeout", "model_group_alias"), (section, key)


WITH_MASTER = [p for p in CORPUS if (raw(p).get("general_settings") or {}).get("master_key")]


def test_master_keys_are_enforced_by_a_running_gateway(gateway_factory: Any, redis_server: Any) -> None:
    assert len(WITH_MASTER) >= 4
    for path in WITH_MASTER:
        config = raw(path)
        config["store"] = {"url": f"redis://127.0.0.1:{redis_server.port}/{next(_next_db)}"}  # a test Redis
        gw = gateway_factory(config, env=ENV)
        try:
            with httpx.Client(base_url=gw.url, timeout=10) as client:
                assert client.get("/v1/models").status_code == 401, path.name
                wrong = client.get("/v1/models", headers={"Authorization": "Bearer sk-1234"})
                assert wrong.status_code == 401, path.name
                body = {"model": "anything", "messages": [{"role": "user", "content": "hi"}]}
                denied = client.post("/v1/chat/completions", json=body)
                assert denied.status_code == 401 and denied.json()["error"], path.name
                ok = client.get("/v1/models", headers={"Authorization": f"Bearer {MASTER}"})
                assert ok.status_code == 200, path.name
        finally:
            gw.stop()
