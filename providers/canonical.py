"""The canonical form between client APIs ("fronts") and providers.

A front (``gateway/fronts/``) turns what a client sent into a canonical request
and turns canonical results and stream events back into the client's wire. A
provider adapter (``providers/``) turns a canonical request into its upstream's
wire and the upstream's answer back into canonical results and events. Neither
side knows the other, so a new client API is one front module and a new
provider is one adapter module.

    client wire --front.parse--> ChatRequest --adapter.chat_request--> upstream wire
    client wire <--front.encode-- ChatResult / StreamEvent <--adapter-- upstream wire

**The request.** The canonical chat request's body is OpenAI's Chat Completions
request, typed below (:class:`ChatBody`). That shape is the superset every
adapter already reads, and an OpenAI-compatible upstream takes it verbatim, so
vendor extras (``top_k``, ``guided_json``, ...) survive the trip. Fronts for
other APIs (Responses, Messages) translate into it.

**The answer.** Results and stream events are typed values, not OpenAI bytes.
The one exception is the hot path: when the client speaks Chat Completions and
the upstream is OpenAI-compatible, the adapter hands the upstream's own bytes
through (:attr:`ChatResult.raw`, :class:`RawChunk`), parsed only for usage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, NewType, TypedDict, Union

from providers.base import UpstreamFailure, Usage

# --- the request -----------------------------------------------------------------


class ChatMessage(TypedDict, total=False):
    role: str  # system | developer | user | assistant | tool
    content: str | list[dict[str, Any]] | None  # text, or parts: {type: text|image_url, ...}
    name: str
    tool_calls: list[dict[str, Any]]  # {id, type: function, function: {name, arguments}}
    tool_call_id: str
    reasoning_content: str


class ChatBody(TypedDict, total=False):
    """OpenAI's Chat Completions request: the fields Taskgate reads; others pass through."""

    model: str
    messages: list[ChatMessage]
    stream: bool
    stream_options: dict[str, Any]
    tools: list[dict[str, Any]]  # {type: function, function: {name, description, parameters}}
    tool_choice: str | dict[str, Any]
    max_tokens: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    stop: str | list[str]
    seed: int
    response_format: dict[str, Any]  # {type: text | json_object | json_schema, json_schema: {...}}
    reasoning_effort: str
    logprobs: bool
    top_logprobs: int
    n: int
    metadata: dict[str, Any]


# Request parameters that change the answer: an adapter that cannot honour one
# must never drop it silently (see :func:`params_in_use` and ``Adapter.supported_params``).
ANSWER_PARAMS = frozenset({
    "tools", "tool_choice", "functions", "function_call", "response_format", "seed", "reasoning_effort",
    "logprobs", "top_logprobs", "n", "logit_bias", "stop", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "frequency_penalty", "presence_penalty", "parallel_tool_calls", "modalities",
    "audio", "prediction", "web_search_options", "service_tier",
})
# Values that ask for nothing beyond the default, so any adapter honours them.
_NEUTRAL: Mapping[str, tuple[Any, ...]] = {
    "n": (1,), "logprobs": (False,), "tool_choice": ("auto", "none"), "parallel_tool_calls": (True,),
    "modalities": (["text"],), "service_tier": ("auto", "default"), "response_format": ({"type": "text"},),
}


def params_in_use(body: Mapping[str, Any]) -> frozenset[str]:
    """The answer-changing parameters a request actually uses (not absent, null or neutral)."""
    used = []
    for name in ANSWER_PARAMS.intersection(body):
        value = body[name]
        if value is None or value in _NEUTRAL.get(name, ()):
            continue
        used.append(name)
    return frozenset(used)


@dataclass(frozen=True, slots=True)
class NativeBody:
    """The client's own request in a provider's wire, for an adapter of that kind
    (``wire`` == ``Adapter.kind``) to send as it is: the Messages API's body to an
    Anthropic upstream. Dropped when policy changed the canonical body (redaction)."""

    wire: str
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. anthropic-version, anthropic-beta


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat request in canonical form."""

    body: ChatBody
    stream: bool = False
    params: frozenset[str] = frozenset()  # answer-changing parameters in use (params_in_use)
    native: NativeBody | None = None

    def hands_through(self, kind: str, chat_bytes: bool) -> bool:
        """Whether an adapter of ``kind`` hands the upstream's bytes to the client unchanged:
        Chat Completions bytes (``chat_bytes``: the adapter and the front both speak them),
        or the client's own wire when the request carries it for this kind."""
        return chat_bytes or (self.native is not None and self.native.wire == kind)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> "ChatRequest":
        chat: ChatBody = dict(body)  # type: ignore[assignment]  # validated by the front
        return cls(chat, body.get("stream") is True, params_in_use(body))


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    body: Mapping[str, Any]  # OpenAI's embeddings request: model, input, dimensions, encoding_format
    encoding_format: str | None = None  # the client's: float (default) or base64


# --- the answer ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A whole chat answer. ``raw`` is the upstream's own Chat Completions body, when it
    speaks OpenAI's wire: the Chat Completions front sends it unchanged."""

    text: str | None
    finish_reason: FinishReason
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None
    id: str | None = None
    raw: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RawChatResult:
    """An OpenAI-compatible upstream's Chat Completions body, read only for its usage.

    What an adapter returns for ``chat_response(..., passthrough=True)``: the Chat
    Completions front sends ``raw`` unchanged (the hot path); nothing else is parsed."""

    usage: Usage
    raw: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EmbeddingsResult:
    vectors: tuple[list[float], ...] | None  # None when ``raw`` holds them
    usage: Usage
    raw: bytes | None = field(default=None, repr=False)  # the upstream's own OpenAI embeddings body


# --- stream events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call. The first piece of an ``index`` has ``id`` and ``name``."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason


@dataclass(frozen=True, slots=True)
class UsageReport:
    usage: Usage
    raw: bytes | None = None  # the upstream's own usage chunk (pass-through)


@dataclass(frozen=True, slots=True)
class StreamError:
    """The upstream reported an error mid-stream; always a decoder's last event."""

    failure: UpstreamFailure


# An OpenAI ``chat.completion.chunk`` SSE event exactly as the upstream sent it: the
# bytes themselves (a distinct type for mypy, no wrapper object on the hot path). Only
# an OpenAI-compatible decoder made with ``passthrough=True`` emits these, and only the
# Chat Completions front asks for that.
RawChunk = NewType("RawChunk", bytes)

StreamEvent = Union[TextDelta, ReasoningDelta, ToolCallDelta, Finish, UsageReport, StreamError, RawChunk]

FINISH_REASONS: Mapping[str, FinishReason] = {
    "stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def finish_reason(value: Any) -> FinishReason:
    return FINISH_REASONS.get(value, "stop") if isinstance(value, str) else "stop"
