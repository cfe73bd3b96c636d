"""Costs. Pure functions over Decimal; money never passes through a float.

Costs are returned as integer pico-dollars (1e-12 USD): every per-token price
in LiteLLM's map is a whole number of pico-dollars, so sums are exact integers
that Redis can add atomically (INCRBY) — up to about $9.2M per counter.

:func:`cost_picousd` reads the same price keys as LiteLLM 1.106.2's
``generic_cost_per_token``, in the same order, so the two agree to the
pico-dollar (``tests/test_price_differential.py`` checks the whole map):

* the response's **service tier** picks ``<key>_priority`` / ``_flex`` (``fast``
  means priority), falling back to the standard key;
* **above-N-token tiers**: when the prompt (``input_tokens``, cached included)
  exceeds N, ``*_above_<N>_tokens`` prices replace input, output and cache
  prices (the highest tier exceeded wins; tier-specific variants first);
* cache reads at ``cache_read_input_token_cost``; cache writes at
  ``cache_creation_input_token_cost``, the 1-hour ones at
  ``cache_creation_input_token_cost_above_1hr`` (both default to the input price);
* **audio** and **image** input tokens at ``input_cost_per_audio_token`` /
  ``input_cost_per_image_token`` (else the input price), audio output at
  ``output_cost_per_audio_token``, reasoning at ``output_cost_per_reasoning_token``
  (else the output price);
* the deployment's **regional uplift** multiplies every token cost;
* **web search**: each query at ``search_context_cost_per_query`` for the
  request's ``search_context_size`` (medium when not given);
* **per-second** prices (GPU hours) times the attempt's upstream seconds.

Where Taskgate differs on purpose (LiteLLM's batch, off-peak and per-character
prices belong to APIs Taskgate does not proxy) is in ``docs/PRICING.md``.
"""

from __future__ import annotations

import re
from decimal import Decimal

from gateway.accounting.prices import (
    BUNDLED,
    Price,
    PriceMapError,
    load_price_map,
    map_entry,
    map_keys,
    price_for,
)
from providers.base import Usage

__all__ = ["BUNDLED", "PICO", "Price", "PriceMapError", "cost_picousd", "format_usd", "load_price_map",
           "map_entry", "map_keys", "price_for", "usd"]

PICO = Decimal(10) ** 12
_TIER_SUFFIX = {"flex": "flex", "balanced": "balanced", "priority": "priority", "fast": "priority",
                "ultrafast": "ultrafast"}
_SUFFIXES = ("_ultrafast", "_balanced", "_priority", "_flex", "_batches")
_TIERED_PREFIXES = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
                    "cache_creation_input_token_cost")
_ABOVE = re.compile(r"_above_(\d+)(k?)_tokens")


def _suffix(service_tier: str | None) -> str:
    found = _TIER_SUFFIX.get((service_tier or "").lower())
    return f"_{found}" if found else ""


def _get(price: Price, key: str, suffix: str, default: Decimal | None) -> Decimal | None:
    """``key`` for the tier, else the standard key, else ``default`` (LiteLLM's get_cost_per_unit)."""
    value = price.rate(key + suffix)
    if value is None and suffix:
        value = price.rate(key)
    return default if value is None else value


def _threshold(key: str) -> int:
    match = _ABOVE.search(key)
    assert match is not None
    return int(match.group(1)) * (1000 if match.group(2) else 1)


def _base_rates(price: Price, usage: Usage, suffix: str) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    """(input, output, cache write, 1-hour cache write, cache read) for this usage's tier and size."""
    inp = _get(price, "input_cost_per_token", suffix, Decimal(0)) or Decimal(0)
    out = _get(price, "output_cost_per_token", suffix, Decimal(0)) or Decimal(0)
    if out == 0:
        out = price.rate("output_cost_per_image_token") or out
    write = _get(price, "cache_creation_input_token_cost", suffix, None)
    write_1h = price.rate("cache_creation_input_token_cost_above_1hr")
    read = _get(price, "cache_read_input_token_cost", suffix, None)
    tiers = sorted((k for k in price.rates if k.startswith(tuple(f"{p}_above_" for p in _TIERED_PREFIXES))
                    and "_tokens" in k and _ABOVE.search(k)
                    and (not k.endswith(_SUFFIXES) or (suffix and k.endswith(suffix)))), key=_threshold)
    for key in tiers:
        match = _ABOVE.search(key)
        assert match is not None
        if usage.input_tokens <= _threshold(key):
            continue
        n = match.group(1) + match.group(2)
        inp = _get(price, f"input_cost_per_token_above_{n}_tokens", suffix, inp) or Decimal(0)
        out = _get(price, f"output_cost_per_token_above_{n}_tokens", suffix, out) or Decimal(0)
        write = _get(price, f"cache_creation_input_token_cost_above_{n}_tokens", suffix, write)
        write_1h = _get(price, f"cache_creation_input_token_cost_above_1hr_above_{n}_tokens", suffix, write_1h)
        read = _get(price, f"cache_read_input_token_cost_above_{n}_tokens", suffix, read)
    write = inp if write is None else write
    read = inp if read is None else read
    return inp, out, write, write if write_1h is None else write_1h, read


def _modality(price: Price, key: str, suffix: str, fallback: Decimal) -> Decimal:
    value = price.rate(key + suffix) if suffix else None
    value = price.rate(key) if value is None else value
    return fallback if value is None else value


def _reasoning_rate(price: Price, suffix: str, output: Decimal) -> Decimal:
    tiered = price.rate("output_cost_per_reasoning_token" + suffix) if suffix else None
    if tiered is not None:
        return tiered
    if suffix and price.rate("output_cost_per_token" + suffix) is not None:
        return output
    standard = price.rate("output_cost_per_reasoning_token")
    return output if standard is None else standard


def token_cost_usd(usage: Usage, price: Price) -> Decimal:
    """The exact USD cost of ``usage``'s tokens (no per-second or per-query part)."""
    suffix = _suffix(usage.service_tier)
    inp, out, write, write_1h, read = _base_rates(price, usage, suffix)
    plain = max(0, usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
                - usage.audio_input_tokens - usage.image_input_tokens)
    write_1h_tokens = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    prompt = (plain * inp + usage.cached_input_tokens * read
              + usage.audio_input_tokens * _modality(price, "input_cost_per_audio_token", suffix, inp)
              + usage.image_input_tokens * _modality(price, "input_cost_per_image_token", suffix, inp)
              + (usage.cache_write_tokens - write_1h_tokens) * write + write_1h_tokens * write_1h)
    if usage.reasoning_tokens > 0 or usage.audio_output_tokens > 0:
        text = max(0, usage.output_tokens - usage.reasoning_tokens - usage.audio_output_tokens)
        audio_out = price.rate("output_cost_per_audio_token")
        completion = (text * out + usage.audio_output_tokens * (out if audio_out is None else audio_out)
                      + usage.reasoning_tokens * _reasoning_rate(price, suffix, out))
    else:
        completion = usage.output_tokens * out
    return (prompt + completion) * price.uplift


def search_cost_usd(price: Price, queries: int, context_size: str | None) -> Decimal:
    """Web search: ``queries`` at the map's per-query price for the context size (medium by default)."""
    if queries <= 0:
        return Decimal(0)
    size = context_size if context_size in ("low", "medium", "high") else "medium"
    return queries * (price.search.get(size) or Decimal(0))


def cost_picousd(usage: Usage, price: Price, upstream_seconds: float = 0.0, *, search_queries: int = 0,
                 search_context_size: str | None = None) -> int:
    """The exact cost of one attempt, in integer pico-dollars.

    Usage is in OpenAI semantics (see :class:`providers.base.Usage`).
    ``upstream_seconds`` is billed at ``input_cost_per_second`` (GPU-hour prices);
    ``search_queries`` web searches at the per-query price.
    """
    total = (token_cost_usd(usage, price)
             + Decimal(str(round(upstream_seconds, 6))) * price.per_second
             + search_cost_usd(price, max(search_queries, usage.web_search_requests), search_context_size))
    return int((total * PICO).to_integral_value())


def usd(picousd: int) -> Decimal:
    return Decimal(picousd) / PICO


def format_usd(picousd: int) -> str:
    """A cost for a header or JSON: plain decimal, no exponent, up to 12 places (integer arithmetic)."""
    whole, frac = divmod(abs(picousd), 1_000_000_000_000)
    text = f"{'-' if picousd < 0 else ''}{whole}.{frac:012d}".rstrip("0")
    return text + "0" if text.endswith(".") else text
