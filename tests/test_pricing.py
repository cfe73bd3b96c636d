"""Exact cost arithmetic: table-driven over price-map entries and overrides."""

from __future__ import annotations

import random
from decimal import Decimal
from types import MappingProxyType

import pytest

from gateway.accounting.pricing import (
    PICO,
    Price,
    cost_picousd,
    format_usd,
    load_price_map,
    map_keys,
    price_for,
)
from providers.base import Deployment, Usage

MAP = load_price_map()


def dep(kind: str, model: str, params: dict | None = None, info: dict | None = None) -> Deployment:
    return Deployment(id="d", model_name="m", kind=kind, model=model,
                      litellm_params=MappingProxyType(params or {}), model_info=MappingProxyType(info or {}))


@pytest.mark.parametrize(
    "deployment,usage,expected_usd",
    [
        # gpt-4o-mini: $0.15/M input, $0.60/M output, cached reads $0.075/M
        (dep("openai", "gpt-4o-mini"), Usage(1000, 500), "0.00045"),
        (dep("openai", "gpt-4o-mini"), Usage(1000, 500, cached_input_tokens=400), "0.00042"),
        # an Azure deployment priced as its base model
        (dep("azure", "my-prod-deployment", info={"base_model": "gpt-4o-mini"}), Usage(1000, 500), "0.00045"),
        (dep("azure", "gpt-4o-mini"), Usage(1_000_000, 0), "0.15"),
        # Bedrock Claude 3.5 Sonnet: $3/M in, $15/M out, cache read $0.30/M, cache write $3.75/M;
        # usage is already normalised (input includes cache reads and writes)
        (dep("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0"),
         Usage(1000, 100, cached_input_tokens=200, cache_write_tokens=300), "0.004185"),
        (dep("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"), Usage(1000, 100), "0.0045"),
        # o3-mini: reasoning tokens are output tokens, priced as output here
        (dep("openai", "o3-mini"), Usage(100, 1000, reasoning_tokens=800), "0.0045100"),
        # per-deployment overrides (LiteLLM keys) win over the map
        (dep("openai", "gpt-4o-mini", {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}),
         Usage(10, 10), "0.00003"),
        (dep("openai", "gpt-4o-mini", {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                                       "cache_read_input_token_cost": 1e-7}), Usage(10, 10, 10), "0.000021"),
        (dep("hosted_vllm", "qwen", {"input_cost_per_token": 0, "output_cost_per_token": 0}), Usage(10, 10), "0"),
        (dep("openai", "text-embedding-3-small"), Usage(1234, 0), "0.00002468"),
    ],
)
def test_exact_costs(deployment: Deployment, usage: Usage, expected_usd: str) -> None:
    price = price_for(deployment, MAP)
    assert price is not None
    assert cost_picousd(usage, price) == int(Decimal(expected_usd) * PICO)


def test_per_second_pricing_for_local_gpus() -> None:
    price = price_for(dep("ollama_chat", "llama3.2", {"input_cost_per_second": Decimal("2.5") / 3600,
                                                      "input_cost_per_token": 0, "output_cost_per_token": 0}), MAP)
    assert price is not None
    assert cost_picousd(Usage(10, 10), price, upstream_seconds=1.44) == int(Decimal("0.001") * PICO)


@pytest.mark.parametrize("model", ["llama3.2-not-in-map", "unknown-model"])
def test_unknown_price_is_none_not_zero(model: str) -> None:
    assert price_for(dep("hosted_vllm", model), MAP) is None


def test_map_keys_order() -> None:
    d = dep("bedrock", "eu.anthropic.claude-x", info={"base_model": "claude-x"})
    # LiteLLM's order: the provider's own entry for the base model before the bare name (Azure prices
    # azure/text-embedding-3-small differently from OpenAI's text-embedding-3-small)
    assert map_keys(d) == ["bedrock/claude-x", "claude-x", "bedrock/eu.anthropic.claude-x", "eu.anthropic.claude-x",
                           "anthropic.claude-x"]


@pytest.mark.parametrize("pico,text", [(0, "0.0"), (1, "0.000000000001"), (235_500_000, "0.0002355"),
                                       (10**12, "1.0"), (123 * 10**12 + 5, "123.000000000005")])
def test_format_usd(pico: int, text: str) -> None:
    assert format_usd(pico) == text


def test_sum_of_100k_costs_is_exact() -> None:
    rng = random.Random(7)
    price = Price.of("1.5e-7", "6e-7", cache_read_input_token_cost="7.5e-8")
    total = 0
    expected = Decimal(0)
    for _ in range(100_000):
        u = Usage(rng.randint(0, 5000), rng.randint(0, 2000))
        u = Usage(u.input_tokens, u.output_tokens, cached_input_tokens=rng.randint(0, u.input_tokens))
        total += cost_picousd(u, price)
        expected += ((u.input_tokens - u.cached_input_tokens) * price.input
                     + u.cached_input_tokens * Decimal("7.5e-8")
                     + u.output_tokens * price.output)
    assert Decimal(total) / PICO == expected  # no float ever touched the sum
