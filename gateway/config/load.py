"""Load, validate and resolve a gateway config (YAML) into frozen values.

The raw YAML is validated by the pydantic models in :mod:`gateway.config.schema`;
this module resolves environment references and builds the frozen
:class:`Config` that the rest of the gateway reads. Every problem is reported as
a :class:`ConfigError` that names the key, the value (never a secret) and the
reason.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from gateway.config import litellm as litellm_settings
from gateway.config import schema as schema
from gateway.config.deployments import SECRET_KEYS, build_deployment
from gateway.config.env import MissingEnv, resolve_env
from gateway.config.identity import Tenant, digest_with, key_digest, keyed
from gateway.config.litellm import Note
from gateway.config.wildcards import Wildcard, captured_env, is_wildcard
from policies.decide import Policies
from policies.schema import check_references
from providers.redact import strip_userinfo
from providers import ADAPTERS, parse_model, unsupported_reason
from providers.environment import env_defaults
from providers.base import Deployment

DEFAULT_CONFIG = "config/gateway.yaml"


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    value: str
    reason: str

    def __str__(self) -> str:
        shown = f" = {self.value}" if self.value else ""
        return f"{self.key}{shown}: {self.reason}"


class ConfigError(Exception):
    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid config {source}:\n{lines}")


@dataclass(frozen=True, slots=True)
class Disabled:
    """A deployment that is off: a value it needs is not in the environment (``cause="env"``), or
    Taskgate cannot serve its provider kind (``cause="kind"``: ``taskgate check --strict`` fails)."""

    model_name: str
    id: str
    reason: str
    cause: str = "env"


@dataclass(frozen=True)
class Config:
    source: str
    groups: Mapping[str, tuple[Deployment, ...]]  # public model name -> deployments, in order
    disabled: tuple[Disabled, ...]
    store: schema.StoreSection
    server: schema.ServerSection
    # HMAC-SHA256(key_secret, api key) -> tenant: the config's keys, hashed at load (never kept in plaintext)
    keys: Mapping[bytes, Tenant] = field(default_factory=lambda: MappingProxyType({}))
    key_secret: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    auth_secret: bytes | None = field(default=None, repr=False)  # auth.secret, when the config sets one
    ignored_sections: tuple[str, ...] = ()
    tasks: schema.TasksSection = field(default_factory=schema.TasksSection)
    budgets: schema.BudgetsSection = field(default_factory=schema.BudgetsSection)
    quotes: schema.QuotesSection = field(default_factory=schema.QuotesSection)
    policies: Policies = field(default_factory=Policies)
    notes: tuple[Note, ...] = ()  # LiteLLM keys translated or ignored, one line each
    wildcards: tuple[Wildcard, ...] = ()  # model_name "*" / "provider/*" entries, resolved per request
    pricing: schema.PricingSection = field(default_factory=schema.PricingSection)
    limits: schema.LimitsSection = field(default_factory=schema.LimitsSection)  # rate limits (ledger/limits.py)

    @property
    def spool_dir(self) -> str:
        """Where records wait for the store (spool, journals, dead letters): one directory per store,
        so that a process never replays another store's records into its own."""
        if self.store.spool_dir:
            return self.store.spool_dir
        if self.store.url == "embedded":
            return os.path.join(self.store.path, "spool")
        digest = hashlib.sha256(self.store.url.encode()).hexdigest()[:12]
        return os.path.join(self.store.path, "spool", digest)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.keys)

    def key_tenant(self, token: str) -> Tenant | None:
        """The tenant of a key from the config (``auth.keys``, ``master_key``), else None."""
        return self.keys.get(digest_with(self._key_hmac, token))

    @cached_property
    def _key_hmac(self) -> hmac.HMAC:  # key_secret's HMAC, keyed once per config (not a field)
        return keyed(self.key_secret)

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        # each once: fallbacks and aliases put a deployment in more than one group
        return tuple({d.id: d for group in self.groups.values() for d in group}.values())

    def public_models(self) -> list[str]:
        return sorted(name for name, group in self.groups.items() if group)


def shown_value(key: str, value: Any) -> str:
    """How a value may appear in an error: secrets and env references are masked."""
    last = key.rsplit(".", 1)[-1].split("[", 1)[0]
    if last in SECRET_KEYS:
        return "'***'"
    if isinstance(value, (dict, list)):
        return ""
    text = strip_userinfo(repr(value))  # http://user:PASS@host -> http://***@host
    return text if len(text) <= 80 else text[:77] + "...'"


# --- loading -----------------------------------------------------------------


def load(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve the config at ``path`` (see :func:`config_path`)."""
    source = str(path or config_path())
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [Problem("(file)", repr(source), exc.strerror or str(exc))]) from None
    return parse(text, source, os.environ if env is None else env)


PACKAGED_CONFIG = str(Path(__file__).with_name("default.yaml"))  # the default config, as package data


def config_path(explicit: str | None = None) -> str:
    """``--config``, else ``$TASKGATE_CONFIG``, else ``config/gateway.yaml`` or ``taskgate.yaml`` (what
    ``taskgate init`` writes) in the current directory, else the packaged default config."""
    found = explicit or os.environ.get("TASKGATE_CONFIG")
    if found:
        return found
    for local in (DEFAULT_CONFIG, "taskgate.yaml"):
        if Path(local).is_file():
            return local
    return PACKAGED_CONFIG


def parse(text: str, source: str, env: Mapping[str, str]) -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        raise ConfigError(source, [Problem(where, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [Problem("(document)", "", "the config must be a mapping of sections")])
    others = sorted(k for k in raw if k in schema.LITELLM_OTHER_SECTIONS)  # LiteLLM's, ignored and listed
    raw = {k: v for k, v in raw.items() if k not in schema.LITELLM_OTHER_SECTIONS}
    try:
        doc = schema.Document.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, [_problem_from_pydantic(e, raw) for e in exc.errors()]) from None
    return _build(doc, source, env, tuple(litellm_settings.section_note(k) for k in others))


def _problem_from_pydantic(err: Any, raw: dict[str, Any]) -> Problem:
    key = _dotted(err["loc"])
    value = _lookup(raw, err["loc"])
    reason = err["msg"]
    if err["type"] == "extra_forbidden":
        reason = "unknown key"
    return Problem(key, shown_value(key, value) if value is not _MISSING else "", reason)


_MISSING = object()


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _lookup(raw: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return raw


def _build(doc: schema.Document, source: str, env: Mapping[str, str], notes: tuple[Note, ...] = ()) -> Config:
    if doc.environment_variables:  # LiteLLM sets these in its environment: here they resolve this config's refs
        env = {**env, **{str(k): str(v) for k, v in doc.environment_variables.items() if v is not None}}
    problems: list[Problem] = []
    groups: dict[str, list[Deployment]] = defaultdict(list)
    disabled: list[Disabled] = []
    seen_ids: set[str] = set()
    per_name: dict[str, int] = defaultdict(int)
    all_ids: dict[str, list[str]] = defaultdict(list)  # enabled or not, for reference checks
    wildcards: list[Wildcard] = []
    settings = litellm_settings.read(doc.general_settings, doc.litellm_settings, doc.router_settings)
    defaults = _deployment_defaults(doc, settings)
    for index, entry in enumerate(doc.model_list):
        where = f"model_list[{index}]"
        dep_id = str(entry.model_info.get("id") or f"{entry.model_name}#{per_name[entry.model_name]}")
        per_name[entry.model_name] += 1
        if dep_id in seen_ids:
            problems.append(Problem(f"{where}.model_info.id", repr(dep_id), "duplicate deployment id"))
            continue
        seen_ids.add(dep_id)
        all_ids[entry.model_name].append(dep_id)
        wildcard = is_wildcard(entry.model_name, entry.litellm_params.model)
        if not wildcard:
            groups.setdefault(entry.model_name, [])
        try:
            params = resolve_env(entry.litellm_params.model_dump(exclude_none=True), env)
        except MissingEnv as missing:
            disabled.append(Disabled(entry.model_name, dep_id, f"environment variable {missing.name} is not set"))
            continue
        if wildcard:  # resolved per requested model (gateway/config/wildcards.py)
            priced = _with_pricing(params, doc.pricing.deployments.get(dep_id))
            wildcards.append(Wildcard(entry.model_name, dep_id, MappingProxyType({**defaults, **priced}),
                                      MappingProxyType(dict(entry.model_info)), captured_env(env)))
            continue
        kind, _ = parse_model(str(params["model"]))
        if kind not in ADAPTERS:
            disabled.append(Disabled(entry.model_name, dep_id, unsupported_reason(kind), cause="kind"))
            continue
        params, missing_key = env_defaults(kind, params, env)
        if missing_key:
            disabled.append(Disabled(entry.model_name, dep_id, f"environment variable {missing_key} is not set "
                                     f"(the config does not set it; LiteLLM reads it for {kind})"))
            continue
        params = _with_pricing(params, doc.pricing.deployments.get(dep_id))
        try:
            groups[entry.model_name].append(build_deployment(dep_id, entry.model_name, entry.model_info,
                                                             {**defaults, **params}))
        except ValueError as exc:
            problems.append(Problem(f"{where}.litellm_params.model", repr(params["model"]), str(exc)))

    for dep_id in doc.pricing.deployments:
        if dep_id not in seen_ids:
            problems.append(Problem(f"pricing.deployments.{dep_id}", "", "no deployment has this id (model_info.id)"))
    pricing = doc.pricing
    if pricing.map_path:
        map_path = os.path.join(os.path.dirname(os.path.abspath(source)), os.path.expanduser(pricing.map_path))
        if not os.path.isfile(map_path):
            problems.append(Problem("pricing.map_path", repr(pricing.map_path), "no such file"))
        pricing = pricing.model_copy(update={"map_path": map_path})

    problems += [Problem(k, v, r) for k, v, r in check_references(doc.routing, doc.compliance, doc.tenants, all_ids)]
    problems += _tenant_names(doc)

    auth_secret: bytes | None = None
    if doc.auth and doc.auth.secret is not None:
        try:
            auth_secret = str(resolve_env(doc.auth.secret, env)).encode()
        except MissingEnv as missing:
            problems.append(Problem("auth.secret", "'***'", f"environment variable {missing.name} is not set"))
    key_secret = auth_secret or os.urandom(32)  # the config's keys are hashed with this at load
    keys: dict[bytes, Tenant] = {}
    for index, key_entry in enumerate(doc.auth.keys if doc.auth else []):
        try:
            key = resolve_env(key_entry.key, env)
        except MissingEnv as missing:
            problems.append(Problem(f"auth.keys[{index}].key", "'***'", f"environment variable {missing.name} is not set"))
            continue
        digest = key_digest(key_secret, str(key))
        if digest in keys:
            problems.append(Problem(f"auth.keys[{index}].key", "'***'", "duplicate key"))
        keys[digest] = Tenant(key_entry.tenant, key_entry.admin,
                              key_id="cfg-" + hashlib.sha256(str(key).encode()).hexdigest()[:12],
                              rpm=key_entry.rpm, tpm=key_entry.tpm)
    if settings.master_key is not None:  # LiteLLM's master key: an admin key, so auth is on
        try:
            master = resolve_env(settings.master_key, env)
        except MissingEnv as missing:  # never load open when the owner locked the proxy
            problems.append(Problem("general_settings.master_key", "'***'",
                                    f"environment variable {missing.name} is not set"))
        else:
            if not isinstance(master, str) or not master:
                problems.append(Problem("general_settings.master_key", "'***'", "must be a non-empty string"))
            else:
                keys.setdefault(key_digest(key_secret, master), Tenant("default", admin=True))

    try:
        store = doc.store.model_copy(update={"url": resolve_env(doc.store.url, env),
                                             "path": resolve_env(doc.store.path, env)})
    except MissingEnv as missing:
        problems.append(Problem("store.url", "'***'", f"environment variable {missing.name} is not set"))
        store = doc.store

    if problems:
        raise ConfigError(source, problems)
    final, group_notes = litellm_settings.apply_groups({k: tuple(v) for k, v in groups.items()}, settings)
    return Config(
        source=source,
        groups=MappingProxyType(final),
        disabled=tuple(disabled),
        store=store,
        server=doc.server,
        keys=MappingProxyType(keys),
        key_secret=key_secret,
        auth_secret=auth_secret,
        ignored_sections=tuple(sorted(doc.litellm_sections())),
        tasks=doc.tasks, budgets=doc.budgets, quotes=doc.quotes,
        policies=Policies(litellm_settings.routing_with(doc.routing, settings, groups), doc.compliance, MappingProxyType(dict(doc.tenants))),
        notes=notes + settings.notes + tuple(group_notes),
        wildcards=tuple(wildcards),
        pricing=pricing,
        limits=doc.limits,
    )


TENANT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # as gateway/ledger/keys.py: no separators, no braces


def _tenant_names(doc: schema.Document) -> list[Problem]:
    """Tenant names become part of store keys: only names that can never collide are allowed."""
    named = [(f"auth.keys[{i}].tenant", k.tenant) for i, k in enumerate(doc.auth.keys if doc.auth else [])]
    named += [(f"budgets.tenants.{name}", name) for name in doc.budgets.tenants]
    named += [(f"tenants.{name}", name) for name in doc.tenants]
    return [Problem(where, repr(name), "a tenant name is 1 to 64 characters of A-Za-z0-9_.- (no ':' or braces)")
            for where, name in named if not TENANT_NAME.fullmatch(name)]


def _deployment_defaults(doc: schema.Document, settings: litellm_settings.LiteLLMSettings) -> dict[str, Any]:
    """``routing.timeouts`` and ``routing.retries`` apply to deployments that set none; where the
    routing section does not set them, LiteLLM's ``num_retries`` and ``timeout`` do."""
    out: dict[str, Any] = {}
    if settings.num_retries is not None:
        out["max_retries"] = settings.num_retries
    if settings.timeout is not None:
        out["timeout"] = settings.timeout
    if doc.routing is None:
        return out
    t, r = doc.routing.timeouts, doc.routing.retries
    if "timeouts" in doc.routing.model_fields_set or "timeout" not in out:
        out.update({"connect_timeout": t.connect_s, "stream_timeout": t.first_token_s, "timeout": t.total_s})
    if "retries" in doc.routing.model_fields_set or "max_retries" not in out:
        out["max_retries"] = r.max
    return out


def _with_pricing(params: dict[str, Any], pricing: schema.DeploymentPricing | None) -> dict[str, Any]:
    """Folds a ``pricing.deployments`` entry into the deployment's LiteLLM price keys."""
    if pricing is None:
        return params
    out = dict(params)
    for key in schema.PRICE_KEYS:
        value = getattr(pricing, key)
        if value is not None:
            out[key] = value
    if pricing.gpu_hourly_usd is not None:
        out["input_cost_per_second"] = pricing.gpu_hourly_usd / 3600
        out.setdefault("input_cost_per_token", 0)
        out.setdefault("output_cost_per_token", 0)
    return out


def replace_store(config: Config, store: schema.StoreSection) -> Config:
    from dataclasses import replace

    return replace(config, store=store)
