"""The ``routing``, ``compliance`` and ``tenants`` config sections (validation only).

Every model is strict (an unknown key is an error) and frozen. Checks that need
only the section itself run here (a class named twice, ``escalate_to`` naming a
less strict class, ``weights`` on a non-weighted model...). Checks that need the
rest of the document (does a deployment id exist?) are in :func:`check_references`,
which the config loader calls with the ``model_list`` it built.

See ``policies/README.md`` for the YAML and what each key means.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable, Literal, Mapping, Sequence

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

NAME = r"^[a-z][a-z0-9_.-]*$"  # data class names: lower case, compared case-insensitively
PiiAction = Literal["allow", "redact", "escalate", "block"]
Strategy = Literal["priority", "weighted", "latency", "cost", "budget", "cost_per_success"]
Scalar = str | int | float | bool


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, protected_namespaces=())


# --- routing ------------------------------------------------------------------


CPS_DEFAULTS: dict[str, float] = {"min_success_rate": 0.0, "explore_share": 0.1, "min_samples": 10, "window": 200}


class ModelRouting(Strict):
    """How the deployments of one public model are ordered."""

    strategy: Strategy = "priority"
    weights: dict[str, float] | None = None  # weighted: deployment id -> weight >= 0
    tiers: list[list[str]] | None = None  # budget: tiers of deployment ids, preferred first, cheapest last
    low_budget_usd: Decimal | None = Field(default=None, ge=0)  # budget: step down below this remainder
    alpha: float = Field(default=0.3, gt=0, le=1)  # latency: EWMA weight of the newest sample
    # cost_per_success (policies/cost_per_success.py); None: the default in CPS_DEFAULTS
    min_success_rate: float | None = Field(default=None, ge=0, le=1)
    explore_share: float | None = Field(default=None, ge=0, le=1)
    min_samples: int | None = Field(default=None, ge=1, le=100_000)
    window: int | None = Field(default=None, ge=2, le=100_000)  # decay: about this many recent jobs per arm count

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and any(w < 0 for w in value.values()):
            raise ValueError("weights must be >= 0")
        return value

    @model_validator(mode="after")
    def _fits_strategy(self) -> "ModelRouting":
        only = {"weights": "weighted", "tiers": "budget", "low_budget_usd": "budget",
                **{key: "cost_per_success" for key in CPS_DEFAULTS}}
        for key, strategy in only.items():
            if getattr(self, key) is not None and self.strategy != strategy:
                raise ValueError(f"'{key}' is only used by strategy '{strategy}' (this model uses '{self.strategy}')")
        if self.strategy == "budget":
            if not self.tiers or any(not tier for tier in self.tiers):
                raise ValueError("strategy 'budget' needs 'tiers': a list of non-empty lists of deployment ids")
            ids = [d for tier in self.tiers for d in tier]
            if len(ids) != len(set(ids)):
                raise ValueError("a deployment may appear in only one budget tier")
        if self.strategy == "cost_per_success" and self.cps("window") <= self.cps("min_samples"):
            raise ValueError("'window' must be larger than 'min_samples' (the decayed job count of a deployment "
                             "never exceeds the window)")
        return self

    def cps(self, key: str) -> float:
        """A cost_per_success option, or its default."""
        value = getattr(self, key)
        return float(CPS_DEFAULTS[key] if value is None else value)


class BreakerSettings(Strict):
    """Circuit breaker: open after ``failures`` consecutive failures (or at once on a 429)."""

    failures: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)
    half_open_probes: int = Field(default=1, ge=1)
    # An upstream's Retry-After opens the breaker for at most this long (a 429 saying
    # "retry in 1e12 s" must not take a deployment out for good).
    max_retry_after_s: float = Field(default=300.0, gt=0, le=86_400)
    # Envoy's panic threshold: when no deployment of a model (of those compliance and
    # capabilities allow) is usable, and at least this share of them are ejected for failures
    # (not rate limits), the ejected ones get probe traffic instead of a 503 for the whole
    # cooldown. 1.0: only when every one is ejected for failures; 0: never.
    panic_threshold: float = Field(default=1.0, ge=0, le=1)


class RetrySettings(Strict):
    max: int = Field(default=2, ge=0, le=10)
    backoff_base_s: float = Field(default=0.1, ge=0)
    backoff_max_s: float = Field(default=2.0, ge=0)


class TimeoutSettings(Strict):
    connect_s: float = Field(default=5.0, gt=0)
    first_token_s: float = Field(default=60.0, gt=0)
    total_s: float = Field(default=600.0, gt=0)


class RoutingSection(Strict):
    default_strategy: Strategy = "priority"  # for public models not listed under ``models``
    models: dict[str, ModelRouting] = Field(default_factory=dict)
    assumed_output_tokens: int = Field(default=1024, ge=1)  # cost/budget estimate when no max_tokens
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    retries: RetrySettings = Field(default_factory=RetrySettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)

    @field_validator("default_strategy")
    @classmethod
    def _plain_default(cls, value: str) -> str:
        if value in ("weighted", "budget"):
            raise ValueError(f"'{value}' needs per-model settings; set it under routing.models.<name>")
        return value

    _default_model: ModelRouting | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        # built once here, not per request: the section is frozen
        self._default_model = ModelRouting(strategy=self.default_strategy)

    def for_model(self, model: str) -> ModelRouting:
        found = self.models.get(model)
        if found is not None:
            return found
        # the private attribute read straight from pydantic's dict: ``self._default_model`` goes through
        # BaseModel.__getattr__, ~10 µs, and this runs several times a request
        default: ModelRouting | None = (self.__pydantic_private__ or {}).get("_default_model")
        return default if default is not None else ModelRouting(strategy=self.default_strategy)


# --- compliance -----------------------------------------------------------------


class PiiRules(Strict):
    """What to do when the request text contains each kind of personal data."""

    email: PiiAction = "allow"
    phone: PiiAction = "allow"
    payment_card: PiiAction = "allow"
    iban: PiiAction = "allow"
    national_id: PiiAction = "allow"
    escalate_to: str | None = None

    def action(self, kind: str) -> str:
        return str(getattr(self, kind, "allow"))

    @model_validator(mode="after")
    def _escalation_target(self) -> "PiiRules":
        escalates = any(getattr(self, k) == "escalate" for k in PII_KINDS)
        if escalates and not self.escalate_to:
            raise ValueError("an 'escalate' action needs 'escalate_to: <stricter class>'")
        if self.escalate_to and not escalates:
            raise ValueError("'escalate_to' is set but no kind of PII uses 'escalate'")
        return self


PII_KINDS = ("email", "phone", "payment_card", "iban", "national_id")


class DataClass(Strict):
    """Where data of one class may go. See the README for how the keys combine."""

    name: str = Field(pattern=NAME)
    description: str = ""
    regions: list[str] | None = None  # model_info.region must be one of these
    open_weight: bool | None = None  # true: model_info.open_weight must be true
    kinds: list[str] | None = None  # the deployment's provider kind must be one of these
    model_info: dict[str, list[Scalar]] | None = None  # model_info[key] must be one of the values
    allow: list[str] = Field(default_factory=list)  # ids / public names allowed despite the attributes
    deny: list[str] = Field(default_factory=list)  # ids / public names never allowed
    pii: PiiRules = Field(default_factory=PiiRules)


class DenyTargets(Strict):
    models: list[str] = Field(default_factory=list)  # public model names
    providers: list[str] = Field(default_factory=list)  # provider kinds
    deployments: list[str] = Field(default_factory=list)  # deployment ids
    regions: list[str] = Field(default_factory=list)  # deployment model_info.region

    @model_validator(mode="after")
    def _not_empty(self) -> "DenyTargets":
        if not (self.models or self.providers or self.deployments or self.regions):
            raise ValueError("'deny' must list at least one of models, providers, deployments, regions")
        return self


class RuleScope(Strict):
    """Who a jurisdiction rule applies to. Every key given must match; no key = everyone."""

    tenants: list[str] | None = None
    tenant_regions: list[str] | None = None
    data_classes: list[str] | None = None


class JurisdictionRule(Strict):
    deny: DenyTargets
    for_: RuleScope = Field(default_factory=RuleScope, alias="for")
    reason: str = Field(min_length=1)


class ComplianceSection(Strict):
    data_classes: list[DataClass] = Field(min_length=1)  # least strict first
    default_class: str
    jurisdiction_rules: list[JurisdictionRule] = Field(default_factory=list)

    @field_validator("default_class")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @model_validator(mode="after")
    def _names(self) -> "ComplianceSection":
        names = self.class_names()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"data class named more than once: {', '.join(dupes)}")
        if self.default_class not in names:
            raise ValueError(f"default_class '{self.default_class}' is not one of the data_classes")
        for dc in self.data_classes:
            target = dc.pii.escalate_to
            if target is not None and (target not in names or self.rank(target) <= self.rank(dc.name)):
                raise ValueError(f"data class '{dc.name}': escalate_to '{target}' must be a stricter class "
                                 f"(listed after it)")
        for i, rule in enumerate(self.jurisdiction_rules):
            unknown = [c for c in rule.for_.data_classes or () if c not in names]
            if unknown:
                raise ValueError(f"jurisdiction_rules[{i}].for.data_classes: unknown class {', '.join(unknown)}")
        return self

    def class_names(self) -> list[str]:
        return [dc.name for dc in self.data_classes]

    def rank(self, name: str) -> int:
        """0 for the least strict class; raises KeyError for an unknown one."""
        for i, dc in enumerate(self.data_classes):
            if dc.name == name:
                return i
        raise KeyError(name)

    def get(self, name: str) -> DataClass:
        return self.data_classes[self.rank(name)]


class TenantPolicy(Strict):
    """A tenant's place in compliance: ``tenants: {<name>: TenantPolicy}``."""

    region: str | None = None
    default_class: str | None = None  # None: compliance.default_class
    may_lower_class: bool = False  # may X-Data-Class name a class below default_class?

    @field_validator("default_class")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else value


# --- references to the rest of the document ---------------------------------------


def check_references(
    routing: RoutingSection | None,
    compliance: ComplianceSection | None,
    tenants: Mapping[str, TenantPolicy] | None,
    groups: Mapping[str, Sequence[str]],
) -> list[tuple[str, str, str]]:
    """Problems as ``(key, value, reason)``; ``groups`` maps public model name -> deployment ids."""
    problems: list[tuple[str, str, str]] = []
    ids = {d for group in groups.values() for d in group}
    for model, mr in (routing.models.items() if routing else ()):
        where = f"routing.models.{model}"
        if model not in groups:
            problems.append((where, repr(model), "not a model_name in model_list"))
            continue
        for key, named in (("weights", mr.weights or {}), ("tiers", [d for t in mr.tiers or () for d in t])):
            for dep in named:
                if dep not in groups[model]:
                    problems.append((f"{where}.{key}", repr(dep), f"not a deployment id of model '{model}'"))
    if compliance is not None:
        for dc in compliance.data_classes:
            for key in ("allow", "deny"):
                problems += _unknown(f"compliance.data_classes[{dc.name}].{key}", getattr(dc, key),
                                     ids | set(groups), "a deployment id or model_name")
        for i, rule in enumerate(compliance.jurisdiction_rules):
            where = f"compliance.jurisdiction_rules[{i}].deny"
            problems += _unknown(f"{where}.models", rule.deny.models, set(groups), "a model_name")
            problems += _unknown(f"{where}.deployments", rule.deny.deployments, ids, "a deployment id")
    for name, tenant in (tenants or {}).items():
        if tenant.default_class is None:
            continue
        if compliance is None:
            problems.append((f"tenants.{name}.default_class", repr(tenant.default_class),
                             "there is no compliance section defining data classes"))
        elif tenant.default_class not in compliance.class_names():
            problems.append((f"tenants.{name}.default_class", repr(tenant.default_class),
                             f"unknown data class (known: {', '.join(compliance.class_names())})"))
    return problems


def _unknown(key: str, names: Iterable[Any], known: set[str], what: str) -> list[tuple[str, str, str]]:
    return [(key, repr(n), f"not {what} in model_list") for n in names if n not in known]
