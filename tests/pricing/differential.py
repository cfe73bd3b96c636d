"""Cases for the differential price test: generated from LiteLLM's bundled price map.

Each case is one raw provider response (the wire body a real upstream sends)
for one price-map model, fed through Taskgate's adapter parser and pricing, and
through LiteLLM 1.106.2's own usage parsing and ``cost_per_token``. Only tests
import this module (the gateway never imports LiteLLM).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Iterator, Mapping

import orjson

from gateway.accounting.pricing import PICO, cost_picousd, load_price_map, price_for
from providers import ADAPTERS
from providers.base import ApiKey, AwsSigV4, Deployment, Usage
from providers.openai_wire import usage_from_openai

# price-map provider -> (Taskgate kind, LiteLLM custom_llm_provider): the providers Taskgate has an adapter for
PROVIDERS = {"openai": ("openai", "openai"), "azure": ("azure", "azure"), "bedrock": ("bedrock", "bedrock"),
             "bedrock_converse": ("bedrock", "bedrock"), "ollama": ("ollama", "ollama")}
MODES = ("chat", "embedding", "responses")
WIRE_KINDS = frozenset({"openai", "azure", "bedrock", "ollama"})
_ABOVE = re.compile(r"^input_cost_per_token_above_(\d+)(k?)_tokens$")
_TIERS = ("priority", "flex")


@dataclass(frozen=True)
class Case:
    id: str  # "<map key> <shape>"
    key: str  # the price-map name
    kind: str
    model: str  # the upstream model id the deployment names
    provider: str  # LiteLLM's custom_llm_provider
    mode: str
    body: dict[str, Any]  # the raw response body
    service_tier: str | None = None
    region: str | None = None
    model_info: Mapping[str, Any] = field(default_factory=dict)


def _deployment(case: Case) -> Deployment:
    creds = AwsSigV4(region=case.region) if case.region else ApiKey()
    return Deployment(id=case.id, model_name="m", kind=case.kind, model=case.model, credentials=creds,
                      model_info=MappingProxyType(dict(case.model_info)))


def _openai_body(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0, audio_in: int = 0,
                 audio_out: int = 0, image_in: int = 0, tier: str | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}
    if cached or audio_in or image_in:
        usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": audio_in}
        if image_in:
            usage["prompt_tokens_details"]["image_tokens"] = image_in
    if reasoning or audio_out:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning, "audio_tokens": audio_out}
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                         "finish_reason": "stop"}], "usage": usage}
    if tier:
        body["service_tier"] = tier
    return body


def _embedding_body(prompt: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.0]}], "model": "m",
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}


def _bedrock_body(inp: int, out: int, *, read: int = 0, write: int = 0, write_1h: int = 0) -> dict[str, Any]:
    usage: dict[str, Any] = {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out + read + write}
    if read or write:
        usage["cacheReadInputTokens"] = read
        usage["cacheWriteInputTokens"] = write
    if write_1h:
        usage["cacheDetails"] = [{"ttl": "5m", "inputTokens": write - write_1h}, {"ttl": "1h", "inputTokens": write_1h}]
    return {"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}}, "stopReason": "end_turn",
            "usage": usage, "metrics": {"latencyMs": 1}}


def _thresholds(entry: Mapping[str, Any]) -> list[int]:
    out = []
    for k in entry:
        m = _ABOVE.match(k)
        if m:
            out.append(int(m.group(1)) * (1000 if m.group(2) else 1))
    return sorted(out)


def _where(key: str, provider: str) -> tuple[str, str | None] | None:
    """(upstream model id, AWS region) a deployment of this map entry names; None: not a deployable name."""
    prefix = {"bedrock_converse": "bedrock"}.get(provider, provider) + "/"
    name = key[len(prefix):] if key.startswith(prefix) else key
    if provider.startswith("bedrock") and "/" in name:
        region, _, rest = name.partition("/")
        if "/" in rest or not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", region):
            return None  # commitment / model-unit prices, not on-demand calls
        return rest, region
    return name, None


def generate(price_map: Mapping[str, Mapping[str, Any]]) -> Iterator[Case]:
    for key, entry in sorted(price_map.items()):
        provider = entry.get("litellm_provider")
        mode = entry.get("mode")
        if not isinstance(provider, str) or mode not in MODES or entry.get("input_cost_per_token") is None:
            continue
        where = _where(key, provider)
        if where is None:
            continue
        model, region = where
        # providers without a Taskgate adapter yet: their OpenAI-shaped usage, priced by the same code
        kind, ll_provider = PROVIDERS.get(provider, (provider, provider))

        def case(shape: str, body: dict[str, Any], tier: str | None = None) -> Case:
            return Case(f"{key} {shape}", key, kind, model, ll_provider, mode, body, tier, region)

        if mode == "embedding":
            if kind == "bedrock":
                continue  # Bedrock embeddings are InvokeModel bodies with no usage breakdown (plain only)
            yield case("plain", _embedding_body(1234))
            continue
        tiers = _thresholds(entry)
        if kind == "ollama":  # Ollama's native /api/chat reports prompt_eval_count and eval_count only
            yield case("plain", {"model": model, "message": {"role": "assistant", "content": "ok"}, "done": True,
                                 "done_reason": "stop", "prompt_eval_count": 1234, "eval_count": 567})
            continue
        if kind == "bedrock":
            yield case("plain", _bedrock_body(1234, 567))
            yield case("cached", _bedrock_body(300, 400, read=1500))
            yield case("cache-write-5m", _bedrock_body(300, 400, read=200, write=1500))
            yield case("cache-write-1h", _bedrock_body(300, 400, read=200, write=1500, write_1h=1000))
            for n in tiers:
                yield case(f"above-{n}", _bedrock_body(n + 1000, 400, read=2000, write=3000, write_1h=1000))
            continue
        yield case("plain", _openai_body(1234, 567))
        yield case("cached", _openai_body(2000, 400, cached=1536))
        yield case("reasoning", _openai_body(500, 1000, reasoning=700))
        if any(k in entry for k in ("input_cost_per_audio_token", "output_cost_per_audio_token")):
            yield case("audio", _openai_body(1000, 800, audio_in=600, audio_out=500))
        if "input_cost_per_image_token" in entry:
            yield case("image", _openai_body(1500, 300, image_in=1000))
        for n in tiers:
            yield case(f"above-{n}", _openai_body(n + 1000, 500, cached=1024, reasoning=100))
        for tier in _TIERS:
            if any(k.endswith(f"_{tier}") for k in entry):
                yield case(f"tier-{tier}", _openai_body(2000, 600, cached=1024, reasoning=200, tier=tier), tier)
                for n in tiers:
                    yield case(f"tier-{tier}-above-{n}", _openai_body(n + 1000, 500, cached=1024, tier=tier), tier)


def taskgate_picousd(case: Case, price_map: Mapping[str, Mapping[str, Any]]) -> int | None:
    """Taskgate's cost: the adapter parses the raw body, pricing prices the usage."""
    dep = _deployment(case)
    # the adapters whose wire bodies this module writes; other kinds (anthropic landed with issue 12) go
    # through the canonical OpenAI usage parser until their body shapes are added here
    adapter = ADAPTERS.get(case.kind) if case.kind in WIRE_KINDS else None
    raw = orjson.dumps(case.body)
    usage: Usage
    if adapter is None:  # no adapter for this provider yet: the canonical OpenAI usage parser
        usage = usage_from_openai(case.body["usage"], case.body.get("service_tier")) or Usage()
    elif case.mode == "embedding":
        usage = adapter.embeddings_response(dep, raw).usage
    else:
        usage = adapter.chat_response(dep, raw, passthrough=adapter.passthrough).usage
    price = price_for(dep, price_map)
    return None if price is None else cost_picousd(usage, price)


def litellm_usage(litellm: Any, case: Case) -> Any:
    """LiteLLM's own reading of the same raw body."""
    if case.kind == "ollama":
        n, m = case.body["prompt_eval_count"], case.body["eval_count"]
        return litellm.Usage(prompt_tokens=n, completion_tokens=m, total_tokens=n + m)
    if case.kind == "bedrock":
        from litellm.llms.bedrock.chat.converse_transformation import AmazonConverseConfig

        return AmazonConverseConfig().transform_usage(case.body["usage"])
    return litellm.Usage(**case.body["usage"])


def litellm_picousd(litellm: Any, case: Case) -> int:
    """LiteLLM's cost of the same response, rounded to the pico-dollar."""
    model = f"{case.region}/{case.model}" if case.region else case.model
    prompt, completion = litellm.cost_per_token(
        model=model, custom_llm_provider=case.provider, usage_object=litellm_usage(litellm, case),
        service_tier=case.service_tier, call_type="embedding" if case.mode == "embedding" else "completion")
    return int(((Decimal(repr(prompt)) + Decimal(repr(completion))) * PICO).to_integral_value())


@dataclass(frozen=True)
class Outcome:
    case: Case
    taskgate: int | None  # pico-dollars; None: unpriced
    litellm: int | str  # pico-dollars, or the error LiteLLM raised

    @property
    def exact(self) -> bool:
        return self.taskgate == self.litellm


# LiteLLM prices some models (DeepSeek, ...) at off-peak rates inside their off_peak_pricing windows, read
# from the clock. Taskgate has no off-peak prices (docs/PRICING.md, deliberate differences), so the reference
# is pinned at one peak-time instant and the figure does not depend on when the test runs.
BILLING_TIME = datetime(2026, 12, 3, 8, 45, tzinfo=timezone.utc)


def run(litellm: Any, price_map: Mapping[str, Mapping[str, Any]]) -> list[Outcome]:
    from litellm._internal_context import pinned_billing_time

    with pinned_billing_time(BILLING_TIME):
        return _run(litellm, price_map)


def _run(litellm: Any, price_map: Mapping[str, Mapping[str, Any]]) -> list[Outcome]:
    out = []
    for case in generate(price_map):
        ours = taskgate_picousd(case, price_map)
        try:
            theirs: int | str = litellm_picousd(litellm, case)
        except Exception as exc:  # the reference cannot price it
            theirs = type(exc).__name__
        out.append(Outcome(case, ours, theirs))
    return out


def read_allowlist(path: str) -> dict[str, tuple[str, str]]:
    """``case id | reason | evidence`` per line (``#`` comments): the documented disagreements."""
    allowed: dict[str, tuple[str, str]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            case_id, reason, evidence = (part.strip() for part in line.split(" | ", 2))
            allowed[case_id] = (reason, evidence)
    return allowed


def bundled_map() -> dict[str, dict[str, Any]]:
    return load_price_map()
