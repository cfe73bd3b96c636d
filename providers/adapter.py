"""The provider adapter interface.

An adapter translates between the canonical form (:mod:`providers.canonical`)
and one provider's wire. It does no I/O: the gateway owns the HTTP client.

    chat_request     ChatRequest               -> UpstreamRequest
    chat_response    upstream response bytes   -> ChatResult (with normalised Usage)
    stream_decoder   upstream stream bytes     -> canonical StreamEvents (+ Usage)
    error            upstream error response   -> UpstreamFailure

Embeddings follow the same pattern with ``embeddings_request`` and
``embeddings_response``. Each kind declares its credentials type, the
litellm_params it requires and the answer-changing parameters it supports.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from providers.base import (
    Credentials,
    Deployment,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
)
from providers.canonical import (
    ChatRequest,
    ChatResult,
    EmbeddingsRequest,
    EmbeddingsResult,
    RawChatResult,
    StreamEvent,
)


class StreamDecoder(Protocol):
    """Turns an upstream byte stream into canonical stream events, incrementally.

    ``usage`` is filled in when the upstream reports it; ``done`` says the
    upstream ended the stream normally; a :class:`~providers.canonical.StreamError`
    is always the last event a decoder emits. ``text`` is what was streamed
    (content, tool arguments, reasoning), for estimates when usage never came.
    """

    usage: Usage | None
    done: bool

    @property
    def text(self) -> list[str]: ...

    def feed(self, data: bytes) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]: ...


class Adapter(Protocol):
    """One provider kind. No I/O: requests out, results and events in.

    ``supported_params`` are the answer-changing chat parameters
    (:data:`providers.canonical.ANSWER_PARAMS`) the adapter honours; ``None``
    means every parameter is passed through to an upstream that speaks OpenAI's
    wire. The router never sends an adapter a request using anything else.
    ``passthrough`` says the upstream speaks OpenAI's Chat Completions wire, so
    its bytes can go to a Chat Completions client unchanged.
    """

    kind: str
    required_params: tuple[str, ...]
    supported_params: frozenset[str] | None
    passthrough: bool

    def credentials(self, params: Mapping[str, Any]) -> Credentials: ...

    def chat_request(self, dep: Deployment, req: ChatRequest) -> UpstreamRequest: ...

    def chat_response(self, dep: Deployment, raw: bytes, passthrough: bool = False) -> ChatResult | RawChatResult:
        """With ``passthrough`` (only asked of an adapter whose ``passthrough`` is True), the
        upstream's body may come back as a :class:`RawChatResult`, parsed only for usage."""
        ...

    def stream_decoder(self, dep: Deployment, passthrough: bool = False) -> StreamDecoder: ...

    def embeddings_request(self, dep: Deployment, req: EmbeddingsRequest) -> UpstreamRequest: ...

    def embeddings_response(self, dep: Deployment, raw: bytes) -> EmbeddingsResult: ...

    def error(self, dep: Deployment, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamFailure: ...
