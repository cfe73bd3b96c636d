"""Where a deployment's price comes from: LiteLLM's price map and the config (pure, no I/O but reading the map).

A :class:`Price` is the map entry's money keys, as exact Decimals, with the
deployment's own overrides laid over them. The cost arithmetic is in
:mod:`gateway.accounting.pricing`.

Lookup (first map name that has an entry wins), the order LiteLLM 1.106.2 uses:

0. ``kind/region/model`` for a deployment with an AWS region (Bedrock's regional prices);
1. ``model_info.base_model``: ``kind/base`` then ``base`` (so Azure's own
   ``azure/<base>`` prices win over OpenAI's bare name);
2. ``kind/model`` then ``model``;
3. ``model`` without a cross-region prefix (``us.``, ``eu.``, ``apac.``, ...).

Overrides (``litellm_params`` price keys, or ``pricing.deployments`` folded into
them) are laid over the map entry key by key, as LiteLLM's Router registers a
deployment's prices: an override of the input price alone keeps the map's
output, cache and tier prices. A deployment with overrides but no map entry is
priced from its overrides alone.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlparse

from providers.base import Deployment

_META = ("max_input_tokens", "max_output_tokens", "supports_function_calling", "supports_vision", "mode",
         "litellm_provider")
_GEO_PREFIXES = ("us.", "eu.", "apac.", "global.", "jp.", "au.")
_RESIDENCY_HOST = re.compile(r"^(eu|us)\.api\.openai\.com$")
# The keys that hold money (USD per unit) or a multiplier of it.
_MONEY = re.compile(r"(cost|_per_(token|second|query|character|image|pixel|page))|^regional_\w+_multiplier")
BUNDLED = "litellm (bundled)"
# A provider's cache-read price when the map gives none, as a share of the input price
# (LiteLLM's apply_provider_cache_read_default): Fireworks bills cached input at half price.
DEFAULT_CACHE_READ_SHARE = {"fireworks_ai": Decimal("0.5")}


class PriceMapError(ValueError):
    """A price map file that cannot be read or is not LiteLLM's format."""


def _number(value: Any) -> bool:
    """A price: a JSON number, or a numeric string (LiteLLM accepts "3e-7")."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and _dec(value) is not None and _dec(value) == _dec(value)  # not NaN


def _money_value(value: Any) -> bool:
    return _number(value) or (isinstance(value, dict) and all(_number(v) for v in value.values()))


def bundled_map_path() -> str | None:
    """The map the installed LiteLLM ships (read as JSON; LiteLLM is never imported)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(spec.submodule_search_locations[0], "model_prices_and_context_window_backup.json")


def load_price_map(path: str | None = None) -> dict[str, dict[str, Any]]:
    """LiteLLM's price map, trimmed to the money keys and the facts Taskgate reads.

    Without ``path``: the installed LiteLLM's bundled map ({} when there is none).
    With ``path`` (``pricing.map_path``): that file, which must be a JSON object of
    model entries with numeric prices, else :class:`PriceMapError`.
    """
    explicit = path is not None
    path = path or bundled_map_path()
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            raw = json.load(fh)
    except OSError as exc:
        if explicit:
            raise PriceMapError(f"cannot read the price map {path}: {exc.strerror or exc}") from None
        return {}
    except ValueError as exc:
        raise PriceMapError(f"the price map {path} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise PriceMapError(f"the price map {path} is not a JSON object of model entries")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or name == "sample_spec":
            continue
        kept = {k: v for k, v in entry.items() if k in _META or (_MONEY.search(k) and _money_value(v))}
        bad = [k for k, v in entry.items() if _MONEY.search(k) and k.endswith(("_per_token", "_token_cost"))
               and v is not None and not _money_value(v)]
        if bad:
            raise PriceMapError(f"the price map {path}: {name}.{bad[0]} is not a number")
        out[name] = kept
    if explicit and not any("input_cost_per_token" in e for e in out.values()):
        raise PriceMapError(f"the price map {path} has no model with input_cost_per_token")
    return out


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@dataclass(frozen=True, slots=True)
class Price:
    """A deployment's prices: price-map keys (USD per unit, or a multiplier) as exact Decimals.

    ``rates`` holds every numeric money key of the entry (``input_cost_per_token``,
    ``cache_read_input_token_cost_priority``, ``output_cost_per_token_above_272k_tokens``,
    ``input_cost_per_audio_token``, ``cache_creation_input_token_cost_above_1hr``, ...);
    ``search`` the per-query web search price by context size (``low``, ``medium``,
    ``high``); ``uplift`` the regional-processing multiplier of the deployment's
    endpoint (OpenAI's ``eu.``/``us.api.openai.com``), 1 elsewhere.
    """

    rates: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))
    search: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))
    uplift: Decimal = Decimal(1)
    source: str = "map"  # "config" (an override is set), or "map"
    key: str | None = None  # the map name it came from

    @classmethod
    def of(cls, input: Decimal | str, output: Decimal | str, *, source: str = "config",
           **rates: Decimal | str) -> Price:
        """A price from plain per-token rates, e.g. ``Price.of("1e-7", "4e-7", cache_read_input_token_cost="1e-8")``."""
        values = {"input_cost_per_token": Decimal(input), "output_cost_per_token": Decimal(output)}
        values.update({k: Decimal(v) for k, v in rates.items()})
        return cls(MappingProxyType(values), source=source)

    def rate(self, key: str) -> Decimal | None:
        return self.rates.get(key)

    @property
    def input(self) -> Decimal:
        return self.rates.get("input_cost_per_token") or Decimal(0)

    @property
    def output(self) -> Decimal:
        return self.rates.get("output_cost_per_token") or Decimal(0)

    @property
    def per_second(self) -> Decimal:
        return self.rates.get("input_cost_per_second") or Decimal(0)


def map_keys(dep: Deployment) -> list[str]:
    """The price-map names to try for a deployment, most specific first (LiteLLM's order)."""
    keys = []
    region = getattr(dep.credentials, "region", None)
    if region:  # Bedrock's region-specific prices: bedrock/<region>/<model>
        keys.append(f"{dep.kind}/{region}/{dep.model}")
    base = dep.model_info.get("base_model")
    if base:
        keys += [f"{dep.kind}/{base}", str(base)]
    keys += [f"{dep.kind}/{dep.model}", dep.model]
    for prefix in _GEO_PREFIXES:
        if dep.model.startswith(prefix):
            keys.append(dep.model[len(prefix):])
    return keys


def map_entry(dep: Deployment, price_map: Mapping[str, Mapping[str, Any]]) -> tuple[str, Mapping[str, Any]] | None:
    for key in map_keys(dep):
        entry = price_map.get(key)
        if entry and (entry.get("input_cost_per_token") is not None or entry.get("input_cost_per_second") is not None):
            return key, entry
    return None


def _money(entry: Mapping[str, Any]) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    rates: dict[str, Decimal] = {}
    search: dict[str, Decimal] = {}
    for k, v in entry.items():
        if k == "search_context_cost_per_query" and isinstance(v, Mapping):
            search = {size.removeprefix("search_context_size_"): d for size, x in v.items()
                      if (d := _dec(x)) is not None}
        elif _MONEY.search(k) and (d := _dec(v)) is not None:
            rates[k] = d
    return rates, search


def residency(api_base: str | None) -> str | None:
    """OpenAI's data-residency region from a regional endpoint (``https://eu.api.openai.com/v1`` -> ``eu``)."""
    host = urlparse(api_base).hostname if api_base else None
    match = _RESIDENCY_HOST.match(host or "")
    return match.group(1) if match else None


def price_for(dep: Deployment, price_map: Mapping[str, Mapping[str, Any]]) -> Price | None:
    """The deployment's price, or None when neither the map nor the config prices it."""
    own, _ = _money(dep.litellm_params)
    found = map_entry(dep, price_map)
    rates, search = _money(found[1]) if found else ({}, {})
    if not found and "input_cost_per_token" not in own and "input_cost_per_second" not in own:
        return None
    share = DEFAULT_CACHE_READ_SHARE.get(str(found[1].get("litellm_provider") if found else dep.kind))
    if share is not None and "cache_read_input_token_cost" not in rates and "input_cost_per_token" in rates:
        rates["cache_read_input_token_cost"] = rates["input_cost_per_token"] * share
    rates.update(own)
    region = residency(dep.api_base)
    uplift = rates.get(f"regional_processing_uplift_multiplier_{region}", Decimal(1)) if region else Decimal(1)
    return Price(MappingProxyType(rates), MappingProxyType(search), uplift,
                 source="config" if own else "map", key=found[0] if found else None)
