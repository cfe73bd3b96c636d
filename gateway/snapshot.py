"""What one config load means for the request path, computed once per load (frozen).

A :class:`Snapshot` holds the config and everything derived from it: each
deployment's price, its capability facts and its timeouts. It is built when the
gateway starts and again on every reload; a request takes the current snapshot
when it begins and keeps it to its end, so a reload never changes the price,
the facts or the timeouts of a request in flight, and a new request never sees
a value derived from an older config. Everything is keyed by deployment id
*within one snapshot*, so no cache can outlive the config it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from gateway.accounting.prices import BUNDLED, Price, bundled_map_path, load_price_map, map_keys, price_for
from gateway.config.load import Config
from gateway.config.wildcards import resolve as resolve_wildcards
from policies.capabilities import ModelFacts, model_facts
from providers import ADAPTERS
from providers.base import Deployment


MAX_WILDCARD_MODELS = 10_000  # distinct model names a snapshot resolves through wildcard entries


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``read`` bounds the wait for each stream chunk (and the first byte)."""

    connect: float
    total: float
    read: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: Config
    prices: Mapping[str, Price | None]  # deployment id -> price (None: unpriced)
    facts: Mapping[str, ModelFacts]  # deployment id -> what the model can do
    unary_timeouts: Mapping[str, Timeouts]
    stream_timeouts: Mapping[str, Timeouts]
    group_params: Mapping[str, frozenset[str] | None]  # public model -> parameters all its deployments honour
    price_map: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    # wildcard groups resolved so far (requested model -> deployments); bounded by MAX_WILDCARD_MODELS
    _wild: dict[str, tuple[tuple[Deployment, ...], tuple[str, ...]]] = field(default_factory=dict, repr=False)
    # the writable tables behind prices, facts, unary_timeouts and stream_timeouts
    _tables: tuple[dict[str, Price | None], dict[str, ModelFacts], dict[str, Timeouts], dict[str, Timeouts]] = field(
        default_factory=lambda: ({}, {}, {}, {}), repr=False)
    price_source: str = BUNDLED  # where the prices came from: pricing.map_path, or the bundled map

    def price(self, dep: Deployment) -> Price | None:
        return self.prices.get(dep.id)

    def wildcard_group(self, model: str) -> tuple[tuple[Deployment, ...], tuple[str, ...]] | None:
        """The deployments a ``model_name: "*"`` or ``"provider/*"`` entry gives ``model`` (None: no pattern
        matches), and why a matching entry cannot serve it. Each is priced by ``model`` itself; its price,
        facts and timeouts join this snapshot's, as for any deployment (they never outlive it)."""
        if not self.config.wildcards:
            return None
        found = self._wild.get(model)
        if found is None:
            found = resolve_wildcards(self.config.wildcards, model)
            if not found[0] and not found[1]:
                return None
            if len(self._wild) >= MAX_WILDCARD_MODELS:
                return (), (f"more than {MAX_WILDCARD_MODELS} distinct model names were sent to wildcard "
                            "entries since the config loaded",)
            for dep in found[0]:
                _derive(dep, self.price_map, *self._tables)
            self._wild[model] = found
        return found


def build_snapshot(config: Config, price_map: Mapping[str, Mapping[str, Any]] | None = None) -> Snapshot:
    """Derive everything per-config from ``config``.

    ``price_map``: LiteLLM's map; read if not given, from ``pricing.map_path`` when
    the config sets one (an invalid file raises PriceMapError), else the bundled map.
    """
    full = price_map if price_map is not None else load_price_map(config.pricing.map_path)
    source = config.pricing.map_path or f"{BUNDLED}: {bundled_map_path()}"
    prices: dict[str, Price | None] = {}
    facts: dict[str, ModelFacts] = {}
    unary: dict[str, Timeouts] = {}
    stream: dict[str, Timeouts] = {}
    for dep in config.deployments:
        _derive(dep, full, prices, facts, unary, stream)
    group_params = {name: _common_params(group) for name, group in config.groups.items()}
    return Snapshot(config, MappingProxyType(prices), MappingProxyType(facts), MappingProxyType(unary),
                    MappingProxyType(stream), MappingProxyType(group_params),
                    full if config.wildcards else MappingProxyType({}),
                    _tables=(prices, facts, unary, stream), price_source=source)


def _derive(dep: Deployment, full: Mapping[str, Mapping[str, Any]], prices: dict[str, Price | None],
            facts: dict[str, ModelFacts], unary: dict[str, Timeouts], stream: dict[str, Timeouts]) -> None:
    """One deployment's price, facts and timeouts, into the snapshot's tables (by deployment id)."""
    entry = next((full[k] for k in map_keys(dep) if k in full), None)
    prices[dep.id] = price_for(dep, full)
    facts[dep.id] = model_facts(dep, entry, ADAPTERS[dep.kind].supported_params)
    unary[dep.id] = Timeouts(dep.connect_timeout, dep.timeout)
    stream[dep.id] = Timeouts(dep.connect_timeout, dep.timeout, dep.stream_timeout)


def _common_params(group: tuple[Deployment, ...]) -> frozenset[str] | None:
    """The parameters every deployment of a group honours (None: all of them)."""
    common: frozenset[str] | None = None
    for dep in group:
        supported = ADAPTERS[dep.kind].supported_params
        if supported is not None:
            common = supported if common is None else common & supported
    return common


class CurrentSnapshot:
    """The one mutable cell: the snapshot new requests take. A reload replaces it whole."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    @property
    def current(self) -> Snapshot:
        return self._snapshot

    @property
    def config(self) -> Config:
        return self._snapshot.config

    def replace(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
