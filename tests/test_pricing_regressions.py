"""One regression case per mismatch that issue 11 measured against litellm 1.106.2.

Each expected cost is worked out by hand from the bundled price map's numbers
(in the comment), checked against LiteLLM's own cost function where it prices
the same thing, and would fail under the old pricing (the "was" figure).
"""

from __future__ import annotations

import itertools
import os
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from gateway.accounting.pricing import PICO, cost_picousd, load_price_map, price_for
from gateway.config.load import parse
from gateway.snapshot import build_snapshot
from providers import ADAPTERS
from providers.base import AwsSigV4, Deployment, Usage
from providers.bedrock_wire import usage_from_bedrock
from providers.openai_wire import usage_from_openai
from tests.conftest import RedisServer
from tests.inproc import Harness
from tests.scripted import TIMED_OUT, Step

MAP = load_price_map()
_dbs = itertools.count(260)


def dep(kind: str, model: str, params: dict[str, Any] | None = None, info: dict[str, Any] | None = None,
        api_base: str | None = None, region: str | None = None) -> Deployment:
    creds = AwsSigV4(region=region) if region else ADAPTERS[kind].credentials({})
    return Deployment(id="d", model_name="m", kind=kind, model=model, api_base=api_base, credentials=creds,
                      litellm_params=MappingProxyType(params or {}), model_info=MappingProxyType(info or {}))


def pico(usd: str) -> int:
    return int(Decimal(usd) * PICO)


def cost(d: Deployment, usage: Usage, **kw: Any) -> int:
    price = price_for(d, MAP)
    assert price is not None
    return cost_picousd(usage, price, **kw)


@pytest.fixture(scope="module")
def litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


def reference(litellm: Any, model: str, provider: str, usage: dict[str, Any], **kw: Any) -> int:
    p, c = litellm.cost_per_token(model=model, custom_llm_provider=provider, usage_object=litellm.Usage(**usage), **kw)
    return int(((Decimal(repr(p)) + Decimal(repr(c))) * PICO).to_integral_value())


def test_long_context_tier_gpt_5_4(litellm: Any) -> None:
    # 300k > 272k: input $5/M (not $2.50), output $22.50/M (not $15): 1.5 + 0.0225 (was 0.765, 49 % low)
    usage = {"prompt_tokens": 300_000, "completion_tokens": 1000, "total_tokens": 301_000}
    assert cost(dep("openai", "gpt-5.4"), usage_from_openai(usage) or Usage()) == pico("1.5225")
    assert reference(litellm, "gpt-5.4", "openai", usage) == pico("1.5225")


def test_long_context_tier_bedrock_eu_sonnet_4() -> None:
    # eu. Sonnet 4, 210k > 200k: $6/M in, $22.50/M out: 1.26 + 0.0225 (was 0.645)
    u = usage_from_bedrock({"inputTokens": 210_000, "outputTokens": 1000})
    assert cost(dep("bedrock", "eu.anthropic.claude-sonnet-4-20250514-v1:0"), u) == pico("1.2825")


@pytest.mark.parametrize(("model", "tier", "usd"), [
    ("gpt-4o", "priority", "0.02125"),  # 1000 x $4.25/M + 1000 x $17/M (was 0.0125, 41 % low)
    ("gpt-5", "flex", "0.005625"),  # 1000 x $0.625/M + 1000 x $5/M (was 0.01125, 100 % high)
    ("gpt-5", "default", "0.01125"),  # the standard tier
])
def test_service_tier_from_the_response(litellm: Any, model: str, tier: str, usd: str) -> None:
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": model, "service_tier": tier,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000}}
    d = dep("openai", model)
    for passthrough in (True, False):  # the hot path reads only the usage; both keep the tier
        usage = ADAPTERS["openai"].chat_response(d, orjson.dumps(body), passthrough).usage
        assert usage.service_tier == tier
        assert cost(d, usage) == pico(usd)
    assert reference(litellm, model, "openai", body["usage"], service_tier=tier) == pico(usd)


def test_service_tier_in_a_stream_usage_chunk() -> None:
    decoder = ADAPTERS["openai"].stream_decoder(dep("openai", "gpt-4o"), True)
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "service_tier": "priority",
             "choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000}}
    decoder.feed(b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n")
    assert decoder.usage is not None and decoder.usage.service_tier == "priority"


def test_audio_tokens_at_audio_prices(litellm: Any) -> None:
    # gpt-audio: 400 text in x $2.5/M + 600 audio in x $32/M + 100 text out x $10/M + 400 audio out x $64/M
    usage = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
             "prompt_tokens_details": {"audio_tokens": 600}, "completion_tokens_details": {"audio_tokens": 400}}
    u = usage_from_openai(usage) or Usage()
    assert (u.audio_input_tokens, u.audio_output_tokens) == (600, 400)
    assert cost(dep("openai", "gpt-audio"), u) == pico("0.0468")  # was 0.0075, 84 % low
    assert reference(litellm, "gpt-audio", "openai", usage) == pico("0.0468")


def test_azure_base_model_reads_azure_prices_first(litellm: Any) -> None:
    # azure/text-embedding-3-small is $0.022/M, OpenAI's bare name $0.02/M (was 9 % low)
    d = dep("azure", "my-embedder", info={"base_model": "text-embedding-3-small"})
    assert cost(d, Usage(1000)) == pico("0.000022")
    assert reference(litellm, "text-embedding-3-small", "azure", {"prompt_tokens": 1000, "completion_tokens": 0,
                                                                   "total_tokens": 1000}) == pico("0.000022")
    # azure/gpt-5.5-pro prices cached input at $3/M; the bare gpt-5.5-pro has no cache price (full $30/M)
    pro = dep("azure", "pro-prod", info={"base_model": "gpt-5.5-pro"})
    assert cost(pro, Usage(1000, 0, cached_input_tokens=800)) == pico("0.0084")  # 200 x 30 + 800 x 3 per M


def test_an_input_override_keeps_the_maps_cache_and_output_prices() -> None:
    # gpt-4o-mini with only input_cost_per_token overridden to $1/M: cached reads stay at the map's $0.075/M and
    # output at $0.60/M: 600 x 1 + 400 x 0.075 + 100 x 0.6 per M (was 0.00104 with output $0)
    d = dep("openai", "gpt-4o-mini", {"input_cost_per_token": 1e-6})
    assert cost(d, Usage(1000, 100, cached_input_tokens=400)) == pico("0.00069")


def test_a_pricing_entry_with_only_a_cache_price_is_used() -> None:
    config = parse("""
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-4o-mini, api_key: k}
    model_info: {id: mini}
pricing:
  deployments:
    mini: {cache_read_input_token_cost: 0.00000001}
""", "t.yaml", {})
    price = build_snapshot(config, MAP).prices["mini"]
    assert price is not None and price.rate("cache_read_input_token_cost") == Decimal("1E-8")
    assert price.input == Decimal("1.5E-7"), "the rest still comes from the map"


def test_bedrock_one_hour_cache_writes(litellm: Any) -> None:
    # Sonnet 4.5: 100 input x $3/M + 1000 one-hour writes x $6/M (was priced at the 5-minute $3.75/M: 33 % low)
    raw = {"inputTokens": 100, "outputTokens": 0, "cacheReadInputTokens": 0, "cacheWriteInputTokens": 1000,
           "cacheDetails": [{"ttl": "1h", "inputTokens": 1000}]}
    u = usage_from_bedrock(raw)
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (1000, 1000)
    assert cost(dep("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"), u) == pico("0.0063")
    # a split that does not account for every written token is not trusted (all 5-minute), as LiteLLM does
    partial = usage_from_bedrock({**raw, "cacheDetails": [{"ttl": "1h", "inputTokens": 400}]})
    assert partial.cache_write_1h_tokens == 0


def test_regional_endpoint_uplift(litellm: Any) -> None:
    # gpt-5.4 on eu.api.openai.com: +10 % on every token
    d = dep("openai", "gpt-5.4", api_base="https://eu.api.openai.com/v1")
    assert cost(d, Usage(1000, 0)) == pico("0.00275")
    assert reference(litellm, "gpt-5.4", "openai", {"prompt_tokens": 1000, "completion_tokens": 0,
                                                     "total_tokens": 1000}, data_residency="eu") == pico("0.00275")
    assert cost(dep("openai", "gpt-5.4"), Usage(1000, 0)) == pico("0.0025")


def test_web_search_is_priced_per_query() -> None:
    d = dep("openai", "gpt-4o-search-preview")
    base = cost(d, Usage(1000, 100))
    assert cost(d, Usage(1000, 100), search_queries=1, search_context_size="high") - base == pico("0.025")
    assert cost(d, Usage(1000, 100, web_search_requests=3)) - base == pico("0.075")


def test_an_invalid_map_path_is_a_clear_error(tmp_path: Any) -> None:
    from gateway.accounting.prices import PriceMapError

    bad = tmp_path / "prices.json"
    bad.write_text("[1, 2]")
    with pytest.raises(PriceMapError, match="not a JSON object"):
        load_price_map(str(bad))
    bad.write_text('{"m": {"input_cost_per_token": "cheap"}}')
    with pytest.raises(PriceMapError, match="not a number"):
        load_price_map(str(bad))


def test_map_path_replaces_the_bundled_prices(tmp_path: Any) -> None:
    newer = tmp_path / "model_prices_and_context_window.json"
    newer.write_text('{"gpt-4o-mini": {"litellm_provider": "openai", "mode": "chat", '
                     '"input_cost_per_token": 2e-07, "output_cost_per_token": 8e-07}}')
    (tmp_path / "gw.yaml").write_text(f"""
model_list:
  - model_name: m
    litellm_params: {{model: openai/gpt-4o-mini, api_key: k}}
    model_info: {{id: mini}}
pricing: {{map_path: {newer.name}}}
""")
    from gateway.config.load import load

    config = load(str(tmp_path / "gw.yaml"))
    snap = build_snapshot(config)
    assert snap.price_source == str(newer)
    price = snap.prices["mini"]
    assert price is not None and price.input == Decimal("2E-7")
    with pytest.raises(Exception, match="no such file"):
        parse("model_list: []\npricing: {map_path: nowhere.json}\n", str(tmp_path / "x.yaml"), {})


GPU_CONFIG = """
model_list:
  - model_name: local
    litellm_params: {model: hosted_vllm/qwen, api_base: "http://gpu/v1", max_retries: 0}
    model_info: {id: gpu}
store: {url: REDIS_URL}
routing:
  retries: {max: 0, backoff_base_s: 0, backoff_max_s: 0}
pricing:
  deployments:
    gpu: {gpu_hourly_usd: 3600}
"""


async def test_a_failed_attempt_on_a_per_second_deployment_costs_its_seconds(redis_server: RedisServer) -> None:
    # $3600/hour = $1/s: a timed-out attempt used the GPU for its duration and is waste
    async with Harness(GPU_CONFIG, f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}") as gw:
        gw.transport.add(Step(raises=TIMED_OUT))
        resp = await gw.call("/v1/chat/completions", {"model": "local", "messages": [{"role": "user", "content": "x"}]})
        assert resp.status == 504
        [rec] = gw.records
        assert rec.outcome == "error" and rec.usage is None
        assert rec.cost_picousd is not None and rec.cost_picousd > 0
        assert rec.cost_picousd == int(Decimal(str(round(rec.duration_s, 6))) * PICO)
        assert rec.waste_reason == "failed"


def test_cache_control_reaches_bedrock_as_cache_points() -> None:
    from providers.bedrock_wire import converse_body
    from tests.fakes.bedrock_fake import validate_converse

    body = converse_body({"model": "m", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "a long policy", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [
            {"type": "text", "text": "a long document", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": "the question"}]}]})
    assert body["system"] == [{"text": "a long policy"}, {"cachePoint": {"type": "default"}}]
    assert body["messages"][0]["content"] == [{"text": "a long document"},
                                              {"cachePoint": {"type": "default", "ttl": "1h"}},
                                              {"text": "the question"}]
    validate_converse(dict(body))  # the strict fake (Bedrock's rules) accepts it
    with pytest.raises(ValueError, match="ttl"):
        converse_body({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]}]})


def test_pricing_section_overrides_litellm_params_which_override_the_map() -> None:
    config = parse("""
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-4o-mini, api_key: k, input_cost_per_token: 0.000002,
                     output_cost_per_token: 0.000003}
    model_info: {id: mini}
pricing:
  deployments:
    mini: {input_cost_per_token: 0.000001}
""", "t.yaml", {})
    price = build_snapshot(config, MAP).prices["mini"]
    assert price is not None and price.source == "config"
    assert (price.input, price.output) == (Decimal("0.000001"), Decimal("0.000003"))
    assert price.rate("cache_read_input_token_cost") == Decimal("7.5E-8")  # the map's


HOT_CONFIG = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-4o, api_base: "http://a/v1", api_key: key-a}
    model_info: {id: a}
  - model_name: search
    litellm_params: {model: openai/gpt-4o-search-preview, api_base: "http://a/v1", api_key: key-a}
    model_info: {id: s}
store: {url: REDIS_URL}
routing:
  retries: {max: 0, backoff_base_s: 0, backoff_max_s: 0}
"""


def _completion(tier: str) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o", "service_tier": tier,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000}})


@pytest.mark.parametrize(("model", "tier", "extra", "usd"), [
    ("m", "default", {}, "0.0125"),  # 1000 x $2.50/M + 1000 x $10/M
    ("m", "priority", {"service_tier": "priority"}, "0.02125"),  # 1000 x $4.25/M + 1000 x $17/M
    ("search", "default", {"web_search_options": {"search_context_size": "low"}}, "0.0375"),  # + a $0.025 query
    ("search", "default", {}, "0.0125"),  # no web_search_options: no query billed
])
async def test_the_hot_path_records_tier_and_search_prices(redis_server: RedisServer, model: str, tier: str,
                                                           extra: dict[str, Any], usd: str) -> None:
    async with Harness(HOT_CONFIG, f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}") as gw:
        gw.transport.add(Step(200, _completion(tier)))
        body = {"model": model, "messages": [{"role": "user", "content": "x"}], **extra}
        resp = await gw.call("/v1/chat/completions", body)
        assert resp.status == 200, resp.body
        assert resp.body == _completion(tier), "the upstream's bytes pass through unchanged"
        [rec] = gw.records
        assert rec.usage is not None and rec.usage.service_tier == tier
        assert rec.cost_picousd == pico(usd)
        assert Decimal(resp.headers["x-request-cost-usd"]) == Decimal(usd)


def test_web_search_price_agrees_with_litellm(litellm: Any) -> None:
    from litellm.litellm_core_utils.llm_cost_calc.tool_call_cost_tracking import StandardBuiltInToolCostTracking

    for model in ("gpt-4o-search-preview", "gpt-5", "gpt-4o-mini"):
        info = litellm.get_model_info(model=model, custom_llm_provider="openai")
        for size in ("low", "medium", "high", None):
            opts = {"search_context_size": size} if size else {}
            ref = StandardBuiltInToolCostTracking.get_cost_for_web_search(opts, info)
            ours = cost(dep("openai", model), Usage(), search_queries=1, search_context_size=size)
            assert ours == int(Decimal(repr(ref)) * PICO), (model, size)


def test_a_reload_to_an_invalid_price_map_is_rejected(tmp_path: Any) -> None:
    from gateway.config.load import load
    from gateway.config.reload import ConfigWatcher
    from gateway.snapshot import CurrentSnapshot

    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4o-mini": {"input_cost_per_token": 2e-07, "output_cost_per_token": 8e-07}}')
    path = tmp_path / "gw.yaml"
    path.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: openai/gpt-4o-mini, api_key: k}\n"
                    "    model_info: {id: mini}\npricing: {map_path: prices.json}\n")
    current = CurrentSnapshot(build_snapshot(load(str(path))))
    reports: list[str] = []
    watcher = ConfigWatcher(lambda: current.config, lambda c: current.replace(build_snapshot(c)), reports.append)
    prices.write_text('{"gpt-4o-mini": {"input_cost_per_token": 3e-07, "output_cost_per_token": 9e-07}}')
    assert watcher.reload() and reports == ["applied"]
    assert current.current.prices["mini"].input == Decimal("3E-7")  # type: ignore[union-attr]
    prices.write_text("[]")
    assert not watcher.reload() and reports == ["applied", "rejected"]
    assert current.current.prices["mini"].input == Decimal("3E-7"), "the previous prices keep serving"  # type: ignore[union-attr]
