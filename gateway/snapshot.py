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

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from gateway.accounting.pricing import Price, load_price_map, map_keys, price_for
from gateway.config.load import Config
from policies.capabilities import ModelFacts, model_facts
from providers import ADAPTERS
from providers.base import Deployment


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

    def price(self, dep: Deployment) -> Price | None:
        return self.prices.get(dep.id)


def build_snapshot(config: Config, price_map: Mapping[str, Mapping[str, Any]] | None = None) -> Snapshot:
    """Derive everything per-config from ``config`` (``price_map``: LiteLLM's map, read if not given)."""
    full = load_price_map() if price_map is None else price_map
    prices: dict[str, Price | None] = {}
    facts: dict[str, ModelFacts] = {}
    unary: dict[str, Timeouts] = {}
    stream: dict[str, Timeouts] = {}
    for dep in config.deployments:
        entry = next((full[k] for k in map_keys(dep) if k in full), None)
        prices[dep.id] = price_for(dep, full)
        facts[dep.id] = model_facts(dep, entry, ADAPTERS[dep.kind].supported_params)
        unary[dep.id] = Timeouts(dep.connect_timeout, dep.timeout)
        stream[dep.id] = Timeouts(dep.connect_timeout, dep.timeout, dep.stream_timeout)
    group_params = {name: _common_params(group) for name, group in config.groups.items()}
    return Snapshot(config, MappingProxyType(prices), MappingProxyType(facts), MappingProxyType(unary),
                    MappingProxyType(stream), MappingProxyType(group_params))


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
