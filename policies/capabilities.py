"""Drop deployments that cannot serve a request (pure).

    rule                      a deployment is dropped when
    capability.tools          the request has ``tools``/``functions`` and the model
                              is known not to support function calling
    capability.vision         a message has an ``image_url`` part and the model is
                              known not to support vision
    capability.context        the estimated prompt tokens exceed ``max_input_tokens``
    capability.streaming      ``stream: true`` and ``model_info.supports_streaming`` is false
    capability.params         the request uses an answer-changing parameter that the
                              deployment's adapter cannot honour (``Adapter.supported_params``)

What is not known is allowed: a model missing from the price map keeps its place.
A deployment's own ``model_info`` (``supports_function_calling``, ``supports_vision``,
``max_input_tokens``) overrides the price map.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping  # (not typing.Mapping: isinstance on it is several times slower)
from typing import Any, Callable, Iterable

from policies.compliance import Filtered
from policies.verdicts import excluded
from providers.base import Deployment

FACT_KEYS = ("supports_function_calling", "supports_vision", "max_input_tokens", "max_output_tokens")


@dataclass(frozen=True, slots=True)
class ModelFacts:
    supports_function_calling: bool | None = None
    supports_vision: bool | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    supported_params: frozenset[str] | None = None  # None: every parameter is passed through


def model_facts(dep: Deployment, entry: Mapping[str, Any] | None,
                supported_params: frozenset[str] | None = None) -> ModelFacts:
    """Facts from the price-map ``entry`` (as :func:`gateway.accounting.pricing.load_price_map` keeps
    them), overridden by the deployment's ``model_info``; ``supported_params`` from its adapter."""
    merged = {k: v for k, v in (entry or {}).items() if k in FACT_KEYS and v is not None}
    merged.update({k: v for k, v in dep.model_info.items() if k in FACT_KEYS and v is not None})
    return ModelFacts(**merged, supported_params=supported_params)


def unsupported_params(params: frozenset[str], facts: ModelFacts) -> list[str]:
    """The parameters in ``params`` that a deployment with ``facts`` cannot honour, sorted."""
    return [] if facts.supported_params is None else sorted(params - facts.supported_params)


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request needs from a deployment."""

    tools: bool = False
    vision: bool = False
    prompt_tokens: int = 0
    stream: bool = False
    params: frozenset[str] = frozenset()  # answer-changing parameters in use


def needs_of(body: Mapping[str, Any], prompt_tokens: int, params: frozenset[str] = frozenset()) -> Needs:
    listed = body.get("messages")
    messages = [m for m in listed if isinstance(m, Mapping)] if isinstance(listed, list) else []
    images = any(isinstance(part, Mapping) and part.get("type") == "image_url"
                 for m in messages if isinstance(m.get("content"), list) for part in m["content"])
    return Needs(tools=bool(body.get("tools") or body.get("functions")), vision=images,
                 prompt_tokens=prompt_tokens, stream=bool(body.get("stream")), params=params)


Check = Callable[[Needs, ModelFacts, Deployment], "str | None"]

CHECKS: tuple[tuple[str, Check], ...] = (
    ("capability.tools", lambda n, f, d: "the model does not support function calling (tools)"
        if n.tools and f.supports_function_calling is False else None),
    ("capability.vision", lambda n, f, d: "the model does not accept images"
        if n.vision and f.supports_vision is False else None),
    ("capability.context", lambda n, f, d: f"about {n.prompt_tokens} prompt tokens exceed max_input_tokens "
        f"{f.max_input_tokens}" if f.max_input_tokens is not None and n.prompt_tokens > f.max_input_tokens
        else None),
    ("capability.streaming", lambda n, f, d: "streaming is off for this deployment (model_info.supports_streaming)"
        if n.stream and d.model_info.get("supports_streaming") is False else None),
    ("capability.params", lambda n, f, d: f"provider '{d.kind}' does not support the parameter(s) "
        f"{', '.join(missing)}" if (missing := unsupported_params(n.params, f)) else None),
)


def filter_capable(deployments: Iterable[Deployment], needs: Needs,
                   facts: Mapping[str, ModelFacts]) -> Filtered:
    """``facts`` maps deployment id -> :class:`ModelFacts`; a missing id knows nothing."""
    allowed, out = [], []
    unknown = ModelFacts()
    for dep in deployments:  # (a plain loop: a generator per deployment cost more than the checks)
        found = facts.get(dep.id, unknown)
        for rule, check in CHECKS:
            why = check(needs, found, dep)
            if why is not None:
                out.append(excluded(dep.id, rule, why))
                break
        else:
            allowed.append(dep)
    return Filtered(tuple(allowed), tuple(out))
