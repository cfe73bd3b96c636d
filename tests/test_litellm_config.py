"""LiteLLM's config as it is: model naming, unknown kinds loaded disabled, settings honoured or listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.load import ConfigError, parse
from providers import ADAPTERS, parse_model
from providers.base import ApiKey, Secret

ROOT = Path(__file__).resolve().parent.parent


def load(text: str, **env: str):  # type: ignore[no-untyped-def]
    return parse(text, "test.yaml", env)


@pytest.mark.parametrize("model,expected", [
    ("gpt-3.5-turbo", ("openai", "gpt-3.5-turbo")),
    ("gpt-4o", ("openai", "gpt-4o")),
    ("o3-mini", ("openai", "o3-mini")),
    ("claude-3-5-sonnet-20241022", ("anthropic", "claude-3-5-sonnet-20241022")),
    ("gemini-1.5-pro", ("vertex_ai", "gemini-1.5-pro")),
    ("gpt-3.5-turbo-instruct", ("text-completion-openai", "gpt-3.5-turbo-instruct")),
    ("openrouter/anthropic/claude-3.5-sonnet", ("openrouter", "anthropic/claude-3.5-sonnet")),
    ("groq/llama3-8b-8192", ("groq", "llama3-8b-8192")),
])
def test_litellm_naming(model: str, expected: tuple[str, str]) -> None:
    assert parse_model(model) == expected


def test_a_bare_name_is_openai_with_litellm_key_variable() -> None:
    text = "model_list:\n  - model_name: gpt-3.5-turbo\n    litellm_params: {model: gpt-3.5-turbo}\n"
    (dep,) = load(text, OPENAI_API_KEY="sk-env").groups["gpt-3.5-turbo"]
    assert (dep.kind, dep.model, dep.credentials) == ("openai", "gpt-3.5-turbo", ApiKey(Secret("sk-env")))
    c = load(text)  # no key anywhere: disabled with the reason, like a missing os.environ/ reference
    assert c.groups["gpt-3.5-turbo"] == () and "OPENAI_API_KEY" in c.disabled[0].reason
    assert c.disabled[0].cause == "env"


@pytest.mark.parametrize("model,words", [
    ("sagemaker/my-endpoint", "SageMaker"),
    ("text-completion-openai/gpt-3.5-turbo-instruct", "legacy completions"),
    ("gpt-3.5-turbo-instruct", "legacy completions"),
    ("nonsense/x", "unknown provider kind 'nonsense'"),
])
def test_unknown_or_unsupported_kinds_load_disabled_with_the_reason(model: str, words: str) -> None:
    c = load(f"model_list:\n  - model_name: m\n    litellm_params: {{model: {model}}}\n"
             "  - model_name: ok\n    litellm_params: {model: openai/gpt-4o, api_key: k}\n")
    assert c.groups["m"] == () and len(c.groups["ok"]) == 1
    (off,) = c.disabled
    assert off.cause == "kind" and words in off.reason


def test_claude_names_map_to_anthropic() -> None:
    c = load("model_list:\n  - model_name: c\n    litellm_params: {model: claude-3-haiku-20240307, api_key: k}\n")
    if "anthropic" in ADAPTERS:
        assert c.groups["c"][0].kind == "anthropic"
    else:
        assert c.disabled[0].cause == "kind" and "anthropic" in c.disabled[0].reason.lower()


def test_master_key_turns_auth_on_and_a_missing_one_is_an_error() -> None:
    base = "model_list: []\ngeneral_settings:\n  master_key: "
    assert load(base + "sk-1234\n").auth_enabled
    assert load(base + "os.environ/LITELLM_MASTER_KEY\n", LITELLM_MASTER_KEY="sk-from-env").key_tenant("sk-from-env").admin
    with pytest.raises(ConfigError) as info:  # never open when the owner locked the proxy
        load(base + "os.environ/LITELLM_MASTER_KEY\n")
    assert "general_settings.master_key" in str(info.value) and "LITELLM_MASTER_KEY" in str(info.value)


TWO = """
model_list:
  - {model_name: big, litellm_params: {model: openai/gpt-4o, api_key: k, rpm: 10}}
  - {model_name: big, litellm_params: {model: openai/gpt-4o-2, api_key: k, rpm: 30}}
  - {model_name: small, litellm_params: {model: openai/gpt-4o-mini, api_key: k}}
  - {model_name: long, litellm_params: {model: openai/gpt-4.1, api_key: k}}
"""


@pytest.mark.parametrize("name,strategy", [("latency-based-routing", "latency"), ("cost-based-routing", "cost"),
                                           ("simple-shuffle", "weighted"), ("least-busy", "priority")])
def test_routing_strategy_is_mapped(name: str, strategy: str) -> None:
    c = load(TWO + f"router_settings: {{routing_strategy: {name}}}\n")
    routing = c.policies.routing
    got = routing.for_model("big").strategy if routing is not None else "priority"
    assert got == strategy
    if strategy == "weighted":
        assert routing is not None and routing.for_model("big").weights == {"big#0": 10.0, "big#1": 30.0}
    assert any(n.key == "router_settings.routing_strategy" for n in c.notes)


def test_num_retries_fallbacks_and_aliases() -> None:
    c = load(TWO + """
router_settings:
  num_retries: 3
  model_group_alias: {gpt-4: big, hidden-one: {model: small, hidden: true}}
litellm_settings:
  fallbacks: [{big: [small]}]
  context_window_fallbacks: [{small: [long]}]
""")
    assert {d.max_retries for d in c.deployments} == {3}
    assert [d.id for d in c.groups["big"]] == ["big#0", "big#1", "small#0"]  # not transitive, as in LiteLLM
    assert [d.id for d in c.groups["small"]] == ["small#0", "long#0"]
    assert [d.id for d in c.deployments] == ["big#0", "big#1", "small#0", "long#0"]  # each once
    assert c.groups["gpt-4"] == c.groups["big"] and c.groups["hidden-one"] == c.groups["small"]


def test_a_deployment_max_retries_wins_over_num_retries() -> None:
    c = load("model_list:\n  - {model_name: m, litellm_params: {model: openai/x, api_key: k, max_retries: 0}}\n"
             "litellm_settings: {num_retries: 4}\n")
    assert c.groups["m"][0].max_retries == 0


def test_ignored_keys_are_listed_and_security_ones_are_warnings() -> None:
    c = load("model_list: []\ngeneral_settings: {allowed_ips: [10.0.0.1], database_url: postgres://x}\n"
             "litellm_settings: {set_verbose: true}\n")
    by_key = {n.key: n for n in c.notes}
    assert by_key["general_settings.allowed_ips"].security
    assert by_key["general_settings.database_url"].security
    assert not by_key["litellm_settings.set_verbose"].security


def run_check(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(path), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_check_warns_and_strict_fails_on_unsupported_kinds(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: sagemaker/ep}\n"
                    "general_settings: {master_key: sk-1234, allowed_ips: [1.2.3.4]}\n")
    out = run_check(path)
    assert out.returncode == 0, out.stderr
    assert "warning: disabled: m#0" in out.stdout and "SageMaker" in out.stdout
    assert "warning (security): general_settings.allowed_ips" in out.stdout
    assert "auth: 1 key(s)" in out.stdout
    strict = run_check(path, "--strict")
    assert strict.returncode == 1 and "--strict" in strict.stderr


def test_environment_variables_resolve_the_config_references() -> None:
    c = load("model_list:\n  - {model_name: m, litellm_params: {model: groq/llama3-8b, api_key: os.environ/MY_KEY}}\n"
             "environment_variables: {MY_KEY: from-the-config}\n")
    assert c.groups["m"][0].credentials == ApiKey(Secret("from-the-config"))
