"""Config loading: LiteLLM format, env references, secrets never shown, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load as cfg
from gateway.config.load import ConfigError, MissingEnv, parse, resolve_env
from providers.base import ApiKey, Secret

ROOT = Path(__file__).resolve().parent.parent


def load(text: str, **env: str) -> cfg.Config:
    return parse(text, "test.yaml", env)


def problems(text: str, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, **env)
    return [str(p) for p in info.value.problems]


MINIMAL = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-4o-mini, api_key: sk-literal-123}
"""


def test_minimal_config_defaults() -> None:
    c = load(MINIMAL)
    assert c.public_models() == ["m"]
    (dep,) = c.groups["m"]
    assert (dep.kind, dep.model, dep.id) == ("openai", "gpt-4o-mini", "m#0")
    assert dep.credentials == ApiKey(Secret("sk-literal-123"))
    assert "sk-literal" not in repr(dep)
    assert c.store.url == "embedded" and not c.auth_enabled


def test_empty_config_is_valid() -> None:
    assert load("").public_models() == []


@pytest.mark.parametrize(
    "value,env,expected",
    [
        ("os.environ/KEY", {"KEY": "v1"}, "v1"),
        ("${KEY}", {"KEY": "v1"}, "v1"),
        ("http://${HOST}:8000/v1", {"HOST": "h"}, "http://h:8000/v1"),
        ("${MISSING:-fallback}", {}, "fallback"),
        ("${EMPTY:-fallback}", {"EMPTY": ""}, "fallback"),
        ("plain", {}, "plain"),
        ({"a": ["${X}"]}, {"X": "1"}, {"a": ["1"]}),
    ],
)
def test_resolve_env(value: object, env: dict[str, str], expected: object) -> None:
    assert resolve_env(value, env) == expected


@pytest.mark.parametrize("value", ["os.environ/NOPE", "x-${NOPE}"])
def test_resolve_env_missing(value: str) -> None:
    with pytest.raises(MissingEnv):
        resolve_env(value, {})


def test_deployment_with_missing_env_is_disabled_not_an_error() -> None:
    c = load("""
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY}
  - model_name: m
    litellm_params: {model: ollama_chat/llama3.2}
""")
    assert [d.kind for d in c.groups["m"]] == ["ollama_chat"]
    assert c.disabled[0].reason == "environment variable OPENAI_API_KEY is not set"


def test_env_values_resolve() -> None:
    c = load("""
model_list:
  - model_name: m
    litellm_params: {model: azure/dep, api_base: "${AZ_BASE}", api_key: os.environ/AZ_KEY}
""", AZ_BASE="https://x.openai.azure.com", AZ_KEY="secret-value")
    (dep,) = c.groups["m"]
    assert dep.api_base == "https://x.openai.azure.com" and dep.credentials == ApiKey(Secret("secret-value"))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("model_list:\n  - model_name: m\n    litellm_params: {model: azure/}\n",
         "model_list[0].litellm_params.model = 'azure/': Value error, names no model"),
        ("model_list:\n  - model_name: m\n    litellm_params: {model: '/gpt-4o'}\n",
         "model_list[0].litellm_params.model = '/gpt-4o': Value error, names no model"),
        ("model_list:\n  - model_name: m\n    litellm_params: {model: azure/dep}\n",
         "model_list[0].litellm_params.model = 'azure/dep': a azure deployment needs litellm_params.api_base"),
        ("model_list:\n  - litellm_params: {model: openai/x}\n", "model_list[0].model_name: Field required"),
        ("model_list:\n  - model_name: m\n    litellm_params: {model: openai/x, timeout: -1}\n",
         "model_list[0].litellm_params.timeout = -1: Input should be greater than 0"),
        ("store: {url: mysql://x}\n", "store.url = '***': Value error, must be 'embedded'"),
        ("stroe: {url: embedded}\n", "stroe: unknown key"),
        ("server: {max_body_bytes: 0}\n", "server.max_body_bytes = 0: Input should be greater than 0"),
        ("auth: {keys: [{key: short, tenant: a}]}\n", "auth.keys[0].key = '***': String should have at least 8"),
        ("model_list: [\n", "line"),
        ("- just a list\n", "(document): the config must be a mapping of sections"),
    ],
)
def test_errors_name_key_value_and_reason(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_secret_values_never_appear_in_errors() -> None:
    text = """
model_list:
  - model_name: m
    litellm_params: {model: openai/x, api_key: [sk-super-secret-value]}
auth:
  keys: [{key: os.environ/ADMIN_KEY, tenant: a}]
"""
    found = "\n".join(problems(text))
    assert "sk-super-secret-value" not in found
    assert "api_key" in found


def test_duplicate_deployment_ids() -> None:
    text = """
model_list:
  - {model_name: a, litellm_params: {model: openai/x}, model_info: {id: same}}
  - {model_name: b, litellm_params: {model: openai/y}, model_info: {id: same}}
"""
    assert any("duplicate deployment id" in p for p in problems(text))


def test_litellm_proxy_config_loads_unchanged() -> None:
    c = cfg.load(ROOT / "config/examples/litellm-proxy.yaml", env={"OPENAI_API_KEY": "k", "AZURE_API_BASE": "https://a",
                                                                   "AZURE_API_KEY": "k2"})
    assert [d.kind for d in c.groups["gpt-4o"]] == ["azure", "openai"]
    assert set(c.ignored_sections) == {"litellm_settings", "router_settings", "general_settings"}
    assert list(c.keys.values()) == [cfg.Tenant("default", admin=True)] and c.key_tenant("sk-1234") == cfg.Tenant("default", admin=True)  # general_settings.master_key
    assert [d.max_retries for d in c.deployments] == [2, 2]  # litellm_settings.num_retries
    assert c.policies.routing is not None and c.policies.routing.for_model("gpt-4o").strategy == "weighted"
    assert [str(n) for n in c.notes if n.key == "litellm_settings.drop_params"]


@pytest.mark.parametrize("path", sorted((ROOT / "config").rglob("*.yaml")))
def test_shipped_configs_are_valid(path: Path) -> None:
    if "prometheus" in path.parts or "grafana" in path.parts:
        pytest.skip("not a gateway config")
    cfg.load(path, env={})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_check_cli_ok_on_default_config() -> None:
    out = run_cli("check")
    assert out.returncode == 0, out.stderr
    assert "config OK" in out.stdout and "local" in out.stdout


def test_check_cli_names_each_problem_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: azure/, api_key: sk-hidden-1}\n"
                   "store: {url: nope}\n")
    out = run_cli("check", "--config", str(bad))
    assert out.returncode != 0
    assert "model_list[0].litellm_params.model" in out.stderr and "store.url" in out.stderr
    assert "Traceback" not in out.stderr and "sk-hidden-1" not in out.stderr + out.stdout


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nonsense: true\n")
    out = run_cli("serve", "--config", str(bad), "--port", "1")
    assert out.returncode != 0 and "nonsense = True: unknown key" in out.stderr and "Traceback" not in out.stderr


def test_config_from_env_var(tmp_path: Path) -> None:
    good = tmp_path / "g.yaml"
    good.write_text(MINIMAL)
    out = run_cli("check", env={"TASKGATE_CONFIG": str(good)})
    assert out.returncode == 0 and str(good) in out.stdout


def test_check_shows_the_price_source_and_validates_map_path(tmp_path: Path) -> None:
    out = run_cli("check")
    assert out.returncode == 0 and "prices: litellm (bundled)" in out.stdout and "priced models" in out.stdout
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4o-mini": {"litellm_provider": "openai", "input_cost_per_token": 2e-07, '
                      '"output_cost_per_token": 8e-07}}')
    good = tmp_path / "g.yaml"
    good.write_text(MINIMAL + "pricing: {map_path: prices.json}\n")
    out = run_cli("check", "--config", str(good))
    assert out.returncode == 0, out.stderr
    assert f"prices: {prices} (1 priced models)" in out.stdout
    prices.write_text("{not json")
    for command in ("check", "serve"):
        out = run_cli(command, "--config", str(good), *(("--port", "1") if command == "serve" else ()))
        assert out.returncode != 0 and "pricing.map_path" in out.stderr and "not JSON" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
