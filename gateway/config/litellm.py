"""LiteLLM Proxy's settings sections, honoured or translated into Taskgate's (pure).

``general_settings``, ``litellm_settings`` and ``router_settings`` are read so
that a LiteLLM config keeps its meaning here:

    general_settings.master_key             an admin key: requests need it (auth is on)
    router_settings.routing_strategy        a Taskgate strategy (STRATEGIES below)
    {router,litellm}_settings.num_retries   the deployments' default max_retries
    {router,litellm}_settings.fallbacks     the fallback groups' deployments follow the group's own
    ... .context_window_fallbacks           the same (the capability check routes around small contexts)
    router_settings.model_group_alias       another public name for a group
    litellm_settings.request_timeout,
    router_settings.timeout                 the deployments' default timeout

Every other key is ignored and listed as a :class:`Note`, one line each, saying
what a user should know; a key whose loss weakens security is a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from policies.schema import ModelRouting, RoutingSection
from providers.base import Deployment

# LiteLLM routing_strategy -> (Taskgate strategy, what a user should know)
STRATEGIES: Mapping[str, tuple[str, str]] = {
    "simple-shuffle": ("weighted", "weighted shuffle by litellm_params weight, rpm or tpm (equal when none)"),
    "latency-based-routing": ("latency", "lowest latency (EWMA of recent calls)"),
    "cost-based-routing": ("cost", "cheapest price first"),
    "least-busy": ("priority", "not available: model_list order, with failover, is used instead"),
    "usage-based-routing": ("priority", "not available: model_list order, with failover, is used instead"),
    "usage-based-routing-v2": ("priority", "not available: model_list order, with failover, is used instead"),
}

HONOURED = frozenset({"master_key", "routing_strategy", "num_retries", "fallbacks", "context_window_fallbacks",
                      "model_group_alias", "request_timeout", "timeout"})
# keys whose loss weakens security: never silent (a warning from `taskgate check`)
SECURITY = {
    "allowed_ips": "IP allow-list not enforced: bind to 127.0.0.1 or filter in front of Taskgate",
    "allowed_routes": "route allow-list not enforced",
    "admin_only_routes": "admin-only routes not enforced; Taskgate's admin endpoints need an admin key",
    "public_routes": "ignored: every route needs a key when auth is on",
    "enable_jwt_auth": "JWT auth not supported: only the master_key and auth.keys are accepted",
    "litellm_jwtauth": "JWT auth not supported: only the master_key and auth.keys are accepted",
    "custom_auth": "custom auth not supported: only the master_key and auth.keys are accepted",
    "enforce_user_param": "the 'user' parameter is not required",
    "guardrails": "LiteLLM guardrails do not run; use Taskgate's compliance section (PII rules)",
    "callbacks": "callbacks do not run (a PII-masking callback such as presidio does not either; "
                 "use Taskgate's compliance section)",
    "database_url": "virtual keys from LiteLLM's database are not accepted; only master_key and auth.keys",
}
OTHER = {
    "drop_params": "Taskgate never drops a parameter: one a deployment cannot honour is routed elsewhere or "
                   "refused with 400",
    "set_verbose": "logging is set with TASKGATE_LOG_LEVEL",
    "success_callback": "callbacks do not run; Taskgate keeps per-task records and Prometheus metrics",
    "failure_callback": "callbacks do not run; Taskgate keeps per-task records and Prometheus metrics",
    "cache": "response caching is not supported",
    "cache_params": "response caching is not supported",
    "redis_host": "Taskgate keeps state in its own store (store.url)",
    "redis_port": "Taskgate keeps state in its own store (store.url)",
    "redis_password": "Taskgate keeps state in its own store (store.url)",
    "store_model_in_db": "models come only from this file",
    "allowed_fails": "circuit breakers are set in routing.breaker",
    "cooldown_time": "circuit breakers are set in routing.breaker",
}


@dataclass(frozen=True, slots=True)
class Note:
    """An ignored or translated LiteLLM key, and what a user should know about it."""

    key: str
    message: str
    security: bool = False

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


_SECTION_SECURITY = {
    "guardrails": "LiteLLM guardrails do not run; use Taskgate's compliance section (PII rules)",
    "policies": "LiteLLM policies are not enforced; use Taskgate's compliance and tenants sections",
    "policy_attachments": "LiteLLM policies are not enforced; use Taskgate's compliance and tenants sections",
    "pass_through_endpoints": "pass-through endpoints are not served",
}


def section_note(name: str) -> Note:
    """The note for one of LiteLLM's other top-level sections (schema.LITELLM_OTHER_SECTIONS)."""
    if name in _SECTION_SECURITY:
        return Note(name, _SECTION_SECURITY[name], security=True)
    return Note(name, "LiteLLM section ignored (Taskgate does not have this feature)")


@dataclass(frozen=True, slots=True)
class LiteLLMSettings:
    master_key: Any = None  # as written (may be an os.environ/ reference)
    strategy: str | None = None  # a Taskgate strategy
    num_retries: int | None = None
    timeout: float | None = None
    fallbacks: Mapping[str, tuple[str, ...]] | None = None  # group -> fallback groups, in order
    aliases: Mapping[str, str] | None = None  # alias -> group
    notes: tuple[Note, ...] = ()


def read(general: Mapping[str, Any] | None, litellm: Mapping[str, Any] | None,
         router: Mapping[str, Any] | None) -> LiteLLMSettings:
    """What the three LiteLLM sections mean here (``None``: the section is absent)."""
    general, litellm, router = general or {}, litellm or {}, router or {}
    notes: list[Note] = []
    strategy = None
    name = router.get("routing_strategy")
    if name is not None:
        mapped = STRATEGIES.get(str(name))
        if mapped is None:
            notes.append(Note("router_settings.routing_strategy", f"'{name}' is unknown; model_list order "
                              "(priority) is used"))
        else:
            strategy = mapped[0]
            notes.append(Note("router_settings.routing_strategy", f"'{name}' -> {mapped[0]}: {mapped[1]}"))
    retries = _first(router, litellm, "num_retries")
    num_retries = max(0, min(10, int(retries))) if isinstance(retries, (int, float)) else None
    timeout = _first(router, litellm, "timeout", "request_timeout")
    fallbacks: dict[str, list[str]] = {}
    for section, label in ((router, "router_settings"), (litellm, "litellm_settings")):
        for key in ("fallbacks", "context_window_fallbacks"):
            for group, targets in _fallback_pairs(section.get(key)):
                fallbacks.setdefault(group, [])
                fallbacks[group] += [t for t in targets if t not in fallbacks[group]]
            if section.get(key) and key == "context_window_fallbacks":
                notes.append(Note(f"{label}.{key}", "honoured as fallbacks: the capability check already "
                                  "routes a prompt past deployments whose context is too small"))
    aliases = _aliases(router.get("model_group_alias"))
    for section, label in ((general, "general_settings"), (litellm, "litellm_settings"), (router, "router_settings")):
        for key in section:
            if key in HONOURED:
                continue
            if key in SECURITY:
                notes.append(Note(f"{label}.{key}", SECURITY[key], security=True))
            else:
                notes.append(Note(f"{label}.{key}", "ignored" + (f": {OTHER[key]}" if key in OTHER else "")))
    return LiteLLMSettings(
        master_key=general.get("master_key"), strategy=strategy, num_retries=num_retries,
        timeout=float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None,
        fallbacks={k: tuple(v) for k, v in fallbacks.items()} or None, aliases=aliases or None,
        notes=tuple(notes),
    )


def _first(a: Mapping[str, Any], b: Mapping[str, Any], *keys: str) -> Any:
    for section in (a, b):
        for key in keys:
            if section.get(key) is not None:
                return section[key]
    return None


def _fallback_pairs(value: Any) -> list[tuple[str, list[str]]]:
    """LiteLLM writes fallbacks as ``[{group: [fallback, ...]}, ...]`` (a single name is accepted too)."""
    out: list[tuple[str, list[str]]] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            for group, targets in item.items():
                names = [targets] if isinstance(targets, str) else targets if isinstance(targets, list) else []
                out.append((str(group), [str(t) for t in names]))
    return out


def _aliases(value: Any) -> dict[str, str]:
    """``{alias: group}`` or ``{alias: {model: group, hidden: bool}}``."""
    out: dict[str, str] = {}
    for alias, target in (value.items() if isinstance(value, dict) else ()):
        if isinstance(target, dict):
            target = target.get("model")
        if isinstance(target, str) and target:
            out[str(alias)] = target
    return out


def apply_groups(groups: Mapping[str, tuple[Any, ...]], settings: LiteLLMSettings) -> tuple[dict[str, tuple[Any, ...]],
                                                                                          list[Note]]:
    """The groups with each one's fallback groups' deployments after its own, and the aliases added."""
    out = dict(groups)
    notes: list[Note] = []
    for group, targets in (settings.fallbacks or {}).items():
        if group not in groups:
            notes.append(Note(f"fallbacks.{group}", "no model_list entry has this model_name; ignored"))
            continue
        chain = list(groups[group])
        for target in targets:
            if target not in groups:
                notes.append(Note(f"fallbacks.{group}", f"fallback '{target}' is not a model_name; skipped"))
                continue
            chain += [d for d in groups[target] if d not in chain]
        out[group] = tuple(chain)
    for alias, target in (settings.aliases or {}).items():
        if alias in groups:
            notes.append(Note(f"router_settings.model_group_alias.{alias}", "is already a model_name; ignored"))
        elif target not in out:
            notes.append(Note(f"router_settings.model_group_alias.{alias}", f"'{target}' is not a model_name; "
                              "ignored"))
        else:
            out[alias] = out[target]
    return out, notes


def shuffle_weights(group: tuple[Any, ...]) -> dict[str, float]:
    """LiteLLM's simple-shuffle weights: litellm_params ``weight``, else ``rpm``, else ``tpm``, else equal."""
    for key in ("weight", "rpm", "tpm"):
        values = {d.id: d.litellm_params.get(key) for d in group}
        if any(isinstance(v, (int, float)) and v > 0 for v in values.values()):
            return {i: float(v) if isinstance(v, (int, float)) and v > 0 else 0.0 for i, v in values.items()}
    return {d.id: 1.0 for d in group}


def routing_with(routing: RoutingSection | None, settings: LiteLLMSettings,
                 groups: Mapping[str, Sequence[Deployment]]) -> RoutingSection | None:
    """LiteLLM's ``routing_strategy`` where the routing section does not choose one."""
    strategy = settings.strategy
    if strategy is None or (routing is not None and "default_strategy" in routing.model_fields_set):
        return routing
    if strategy == "priority":
        return routing
    raw = routing.model_dump(by_alias=True) if routing is not None else {}
    if strategy != "weighted":  # validated again, so that derived defaults follow the new strategy
        return RoutingSection.model_validate({**raw, "default_strategy": strategy})
    models = {name: ModelRouting(strategy="weighted", weights=shuffle_weights(tuple(group)))
              for name, group in groups.items() if len(group) > 1 and name not in raw.get("models", {})}
    return RoutingSection.model_validate({**raw, "models": {**raw.get("models", {}), **models}})
