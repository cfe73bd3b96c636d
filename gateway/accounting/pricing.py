"""Prices and costs. Pure functions over Decimal; money never passes through a float.

Costs are returned as integer pico-dollars (1e-12 USD): every per-token price
in LiteLLM's map is a whole number of pico-dollars, so sums are exact integers
that Redis can add atomically (INCRBY) — up to about $9.2M per counter.

Where a price comes from, first match wins:
1. the deployment's own ``litellm_params`` (``input_cost_per_token``, ...);
2. LiteLLM's bundled price map (read as JSON; LiteLLM is never imported),
   under the deployment's ``model_info.base_model``, ``kind/model`` or ``model``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from providers.base import Deployment, Usage

PICO = Decimal(10) ** 12
_FIELDS = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
           "cache_creation_input_token_cost", "output_cost_per_reasoning_token", "input_cost_per_second")
_KEEP = _FIELDS + ("max_input_tokens", "max_output_tokens", "supports_function_calling", "supports_vision", "mode")
_GEO_PREFIXES = ("us.", "eu.", "apac.", "global.", "jp.", "au.")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per unit. ``None`` means "same as the input (or output) price"."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None
    per_second: Decimal = Decimal(0)
    source: str = "map"  # "config" or "map"


def load_price_map(path: str | None = None) -> dict[str, dict[str, Any]]:
    """LiteLLM's bundled price map, trimmed to the fields Taskgate reads."""
    if path is None:
        spec = importlib.util.find_spec("litellm")
        if spec is None or not spec.submodule_search_locations:
            return {}
        path = os.path.join(spec.submodule_search_locations[0], "model_prices_and_context_window_backup.json")
    try:
        with open(path, "rb") as fh:
            raw = json.load(fh)
    except OSError:
        return {}
    return {
        name: {k: v for k, v in entry.items() if k in _KEEP}
        for name, entry in raw.items()
        if isinstance(entry, dict) and name != "sample_spec"
    }


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _from_entry(entry: Mapping[str, Any], source: str) -> Price | None:
    if entry.get("input_cost_per_token") is None and entry.get("input_cost_per_second") is None:
        return None
    return Price(
        input=_dec(entry.get("input_cost_per_token")) or Decimal(0),
        output=_dec(entry.get("output_cost_per_token")) or Decimal(0),
        cache_read=_dec(entry.get("cache_read_input_token_cost")),
        cache_write=_dec(entry.get("cache_creation_input_token_cost")),
        reasoning=_dec(entry.get("output_cost_per_reasoning_token")),
        per_second=_dec(entry.get("input_cost_per_second")) or Decimal(0),
        source=source,
    )


def map_keys(dep: Deployment) -> list[str]:
    """The price-map names to try for a deployment, most specific first."""
    keys = []
    base = dep.model_info.get("base_model")
    if base:
        keys += [str(base), f"{dep.kind}/{base}"]
    keys += [f"{dep.kind}/{dep.model}", dep.model]
    for prefix in _GEO_PREFIXES:
        if dep.model.startswith(prefix):
            keys.append(dep.model[len(prefix):])
    return keys


def price_for(dep: Deployment, price_map: Mapping[str, Mapping[str, Any]]) -> Price | None:
    own = _from_entry(dep.litellm_params, "config")
    if own is not None:
        return own
    for key in map_keys(dep):
        entry = price_map.get(key)
        if entry:
            found = _from_entry(entry, "map")
            if found is not None:
                return found
    return None


def cost_picousd(usage: Usage, price: Price, upstream_seconds: float = 0.0) -> int:
    """The exact cost of one attempt, in integer pico-dollars.

    Usage is in OpenAI semantics: cached reads and cache writes are part of
    ``input_tokens``, reasoning tokens part of ``output_tokens``.
    """
    cache_read = price.input if price.cache_read is None else price.cache_read
    cache_write = price.input if price.cache_write is None else price.cache_write
    reasoning = price.output if price.reasoning is None else price.reasoning
    plain_input = max(0, usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens)
    plain_output = max(0, usage.output_tokens - usage.reasoning_tokens)
    usd = (
        plain_input * price.input
        + usage.cached_input_tokens * cache_read
        + usage.cache_write_tokens * cache_write
        + plain_output * price.output
        + usage.reasoning_tokens * reasoning
        + Decimal(str(round(upstream_seconds, 6))) * price.per_second
    )
    return int((usd * PICO).to_integral_value())


def usd(picousd: int) -> Decimal:
    return Decimal(picousd) / PICO


def format_usd(picousd: int) -> str:
    """A cost for a header or JSON: plain decimal, no exponent, up to 12 places (integer arithmetic)."""
    whole, frac = divmod(abs(picousd), 1_000_000_000_000)
    text = f"{'-' if picousd < 0 else ''}{whole}.{frac:012d}".rstrip("0")
    return text + "0" if text.endswith(".") else text
