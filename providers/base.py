"""The values every adapter shares: deployments and their credentials, usage,
upstream requests and failures. The adapter interface itself is in
:mod:`providers.adapter`; the canonical form in :mod:`providers.canonical`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Mapping


class Secret:
    """A string that never shows itself in repr, str, logs or errors."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A bearer-style key (OpenAI, Azure, vLLM, llama.cpp; optional for local servers)."""

    key: Secret | None = None

    def secrets(self) -> tuple[Secret, ...]:
        return (self.key,) if self.key is not None else ()


@dataclass(frozen=True, slots=True)
class AwsSigV4:
    """What SigV4 signs with: the region and the access key (Bedrock)."""

    region: str | None = None
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(s for s in (self.access_key_id, self.secret_access_key, self.session_token) if s is not None)


@dataclass(frozen=True, slots=True)
class GoogleServiceAccount:
    """A Google Cloud service account key (its JSON), for Vertex AI, and the project and location."""

    info: Secret | None = None
    project: str | None = None
    location: str = "us-central1"

    def secrets(self) -> tuple[Secret, ...]:
        return (self.info,) if self.info is not None else ()


Credentials = ApiKey | AwsSigV4 | GoogleServiceAccount
NO_CREDENTIALS = ApiKey()


@dataclass(frozen=True, slots=True)
class Deployment:
    """One upstream deployment of a public model, as an adapter needs it."""

    id: str  # unique within the config, e.g. "gpt-4o#0" or model_info.id
    model_name: str  # the public name clients send
    kind: str  # provider kind: openai, azure, bedrock, hosted_vllm, ollama_chat, ...
    model: str  # the upstream model id or Azure deployment name
    api_base: str | None = None
    credentials: Credentials = NO_CREDENTIALS  # the kind's own type (Adapter.credentials builds it)
    api_version: str | None = None
    timeout: float = 600.0  # seconds, whole non-streaming call
    stream_timeout: float = 60.0  # seconds, to first byte and between stream chunks
    connect_timeout: float = 5.0
    max_retries: int = 0
    model_info: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    litellm_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # no secrets

    @property
    def provider(self) -> str:
        """The provider label used in metrics and logs (the kind)."""
        return self.kind


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage in OpenAI's semantics, whatever the provider reported.

    Every count below is a *part of* ``input_tokens`` or ``output_tokens``, never
    in addition to it; adapters convert (the price arithmetic relies on it):

    * ``input_tokens`` includes cache reads, cache writes, audio and image tokens
      (Bedrock's ``inputTokens`` and Anthropic's ``input_tokens`` exclude cache
      reads and writes: the adapter adds them back);
    * ``cached_input_tokens``: cache reads (OpenAI ``prompt_tokens_details.cached_tokens``,
      Bedrock ``cacheReadInputTokens``, Anthropic ``cache_read_input_tokens``, Gemini
      ``cachedContentTokenCount``);
    * ``cache_write_tokens``: cache writes of any duration (Bedrock
      ``cacheWriteInputTokens``, Anthropic ``cache_creation_input_tokens``), of which
      ``cache_write_1h_tokens`` are written for one hour (Bedrock ``cacheDetails``
      with ``ttl: "1h"``, Anthropic ``cache_creation.ephemeral_1h_input_tokens``);
      the rest are 5-minute writes;
    * ``audio_input_tokens`` / ``image_input_tokens``: OpenAI
      ``prompt_tokens_details.audio_tokens`` / ``image_tokens`` (Gemini's
      ``promptTokensDetails`` by modality);
    * ``output_tokens`` includes reasoning and audio output: ``reasoning_tokens``
      (OpenAI ``completion_tokens_details.reasoning_tokens``, Gemini
      ``thoughtsTokenCount`` — which Gemini reports *outside* its candidates count,
      so the adapter adds it to ``output_tokens``), ``audio_output_tokens``
      (``completion_tokens_details.audio_tokens``);
    * ``service_tier``: the tier the provider says it served (OpenAI's response
      ``service_tier``: ``default``, ``flex``, ``priority``; Anthropic's
      ``usage.service_tier``), which picks the tier's prices;
    * ``web_search_requests``: searches the provider ran and bills per query
      (Anthropic ``server_tool_use.web_search_requests``).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # cache reads, part of input_tokens
    cache_write_tokens: int = 0  # cache writes, part of input_tokens
    cache_write_1h_tokens: int = 0  # the part of cache_write_tokens written with a 1-hour TTL (Anthropic, Bedrock)
    reasoning_tokens: int = 0  # part of output_tokens
    audio_input_tokens: int = 0  # part of input_tokens
    image_input_tokens: int = 0  # part of input_tokens
    audio_output_tokens: int = 0  # part of output_tokens
    service_tier: str | None = None
    web_search_requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


class FailureReason(str, Enum):
    """What went wrong upstream, independent of any provider's wording."""

    BAD_REQUEST = "bad_request"  # the client's request is invalid for this provider
    CONTENT_FILTER = "content_filter"
    AUTH = "auth"  # the gateway's credentials for the provider were rejected
    NOT_FOUND = "not_found"  # the upstream does not know the model/deployment
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    UNAVAILABLE = "unavailable"  # cannot connect, or the provider says so
    PROTOCOL = "protocol"  # the upstream answered something we cannot parse


# UpstreamFailure.code of an answer cut at server.max_upstream_response_bytes (or an SSE line at
# server.max_upstream_event_bytes): the client sees a 502 with this code (gateway/errors.py)
UPSTREAM_TOO_LARGE = "upstream_response_too_large"


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    reason: FailureReason
    status: int  # the upstream HTTP status, 0 when there was none
    message: str
    retry_after: float | None = None
    code: str | None = None


class Unsupported(ValueError):
    """A request uses something this provider cannot do. Becomes a 400."""

    def __init__(self, kind: str, feature: str) -> None:
        super().__init__(f"provider '{kind}' does not support {feature}")
        self.kind = kind
        self.feature = feature


def reason_for_status(status: int) -> FailureReason:
    """The default mapping from an HTTP status to a failure reason."""
    if status == 429:
        return FailureReason.RATE_LIMITED
    if status in (401, 403):
        return FailureReason.AUTH
    if status == 404:
        return FailureReason.NOT_FOUND
    if status in (408, 504):
        return FailureReason.TIMEOUT
    if status == 503:
        return FailureReason.UNAVAILABLE
    if 400 <= status < 500:
        return FailureReason.BAD_REQUEST
    return FailureReason.SERVER_ERROR


# The most a Retry-After header can say (a day); the breaker caps it further
# (routing.breaker.max_retry_after_s, default 300 s).
MAX_RETRY_AFTER_S = 86_400.0


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (delta-seconds only), at most
    :data:`MAX_RETRY_AFTER_S`; a negative, infinite or unreadable value is ignored."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, MAX_RETRY_AFTER_S)
    return None


# --- usage sanity ---------------------------------------------------------------------

# The most tokens one attempt may report in any usage field. The largest context
# windows are ~10 M tokens; 100 M leaves room and keeps every figure exact in a
# double (Lua) and its cost within int64 pico-dollars at any real price.
MAX_USAGE_TOKENS = 100_000_000
NOT_A_COUNT = -(2**62)  # what token_count makes of a value that is not a whole number


def token_count(value: object) -> int:
    """A token count as the upstream sent it: absent is 0, a whole number is itself, and
    anything else (1.5, "abc", true, NaN) is :data:`NOT_A_COUNT`, which :func:`usage_problem`
    reports. Parsers use this instead of ``int()``, which would truncate or raise."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return NOT_A_COUNT
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return NOT_A_COUNT


def usage_problem(usage: Usage) -> str | None:
    """Why ``usage`` cannot be billed (negative, not a whole number, beyond
    :data:`MAX_USAGE_TOKENS`), or None when it can. (A part larger than its whole, such
    as more cached tokens than input tokens, is priced as no more than the whole.)"""
    fields = (("input_tokens", usage.input_tokens), ("output_tokens", usage.output_tokens),
              ("cached_input_tokens", usage.cached_input_tokens), ("cache_write_tokens", usage.cache_write_tokens),
              ("reasoning_tokens", usage.reasoning_tokens))
    for name, value in fields:
        if type(value) is not int or value <= NOT_A_COUNT // 2:
            return f"the upstream reported {name} that is not a whole number"
        if value < 0:
            return f"the upstream reported negative {name} ({value})"
        if value > MAX_USAGE_TOKENS:
            return f"the upstream reported {name} beyond the bound of {MAX_USAGE_TOKENS:,} ({value:,})"
    return None
