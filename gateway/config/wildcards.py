"""LiteLLM's wildcard deployments: ``model_name: "*"`` or ``"openai/*"`` (pure).

A wildcard entry serves any model name its ``model_name`` pattern matches that no
plain ``model_name`` serves. The client's model goes through to the provider:
``model: openai/*`` with ``model_name: "*"`` sends ``gpt-4o`` to OpenAI for a client
asking for ``gpt-4o``; with ``model_name: "openai/*"`` the part the ``*`` matched
(``openai/gpt-4o`` -> ``gpt-4o``) replaces the ``*``. A bare ``model: "*"`` takes
the requested name whole, with LiteLLM's naming (a bare name is OpenAI's). A
``model`` without ``*`` is a catch-all: every matching name goes to that model.

The most specific pattern wins (the longest text around its ``*``); all entries
with that pattern form the group, in model_list order. Each resolved deployment
has the id ``<entry id>:<requested model>`` and is priced by the model the
client asked for (see ``gateway/snapshot.py``, which resolves and caches them).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from gateway.config.deployments import build_deployment
from providers import ADAPTERS, parse_model, unsupported_reason
from providers.base import Deployment
from providers.environment import env_defaults, env_names


@dataclass(frozen=True, slots=True)
class Wildcard:
    pattern: str  # the entry's model_name: "*", "openai/*", "gpt-*"
    id: str
    params: Mapping[str, Any]  # resolved litellm_params (defaults and pricing folded in); model may hold "*"
    model_info: Mapping[str, Any]
    env: Mapping[str, str]  # LiteLLM's environment defaults, as they were when the config loaded

    def match(self, requested: str) -> str | None:
        """What the ``*`` matched, or None."""
        if "*" not in self.pattern:  # `model: openai/*` under a plain model_name
            return requested if requested == self.pattern else None
        prefix, _, suffix = self.pattern.partition("*")
        if len(requested) <= len(prefix) + len(suffix) or not requested.startswith(prefix) \
                or not requested.endswith(suffix):
            return None
        return requested[len(prefix):len(requested) - len(suffix)]

    @property
    def specificity(self) -> int:
        return len(self.pattern) - 1


def is_wildcard(model_name: str, model: str) -> bool:
    return "*" in model_name or model == "*" or model.endswith("/*")


def captured_env(env: Mapping[str, str]) -> Mapping[str, str]:
    """The part of the environment LiteLLM's defaults read (for kinds known only at request time)."""
    return MappingProxyType({name: env[name] for name in env_names() if name in env})


def resolve(wildcards: Sequence[Wildcard], requested: str) -> tuple[tuple[Deployment, ...], tuple[str, ...]]:
    """The deployments serving ``requested`` (empty: no pattern matches), and why any matching entry
    cannot serve it (an unsupported kind, a missing variable)."""
    matches = [(w, star) for w in wildcards if (star := w.match(requested)) is not None]
    if not matches:
        return (), ()
    best = max(w.specificity for w, _ in matches)
    deployments: list[Deployment] = []
    reasons: list[str] = []
    for w, star in matches:
        if w.specificity != best:
            continue
        template = str(w.params["model"])
        model = requested if template == "*" else template.replace("*", star) if "*" in template else template
        kind, upstream = parse_model(model)
        if kind not in ADAPTERS:
            reasons.append(f"{w.id}: {unsupported_reason(kind)}")
            continue
        params, missing = env_defaults(kind, {**w.params, "model": model}, w.env)
        if missing:
            reasons.append(f"{w.id}: environment variable {missing} is not set")
            continue
        try:
            deployments.append(build_deployment(f"{w.id}:{requested}", requested, w.model_info, params))
        except ValueError as exc:
            reasons.append(f"{w.id}: {exc}")
    return tuple(deployments), tuple(reasons)
