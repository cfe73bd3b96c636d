"""What a front is: one client API, translated to and from the canonical form.

A front parses what its client sent into a canonical request, and encodes
canonical results, stream events and errors in its client's wire. The proxy
path (``gateway/proxy/``) knows only this interface, so adding a client API is
writing one module here and routing its path to it in ``gateway/edge/asgi.py``.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from gateway.errors import GatewayError
from providers.base import Usage
from providers.canonical import (
    ChatRequest,
    ChatResult,
    EmbeddingsRequest,
    EmbeddingsResult,
    RawChatResult,
    StreamEvent,
)

Headers = list[tuple[bytes, bytes]]


class StreamEncoder(Protocol):
    """Canonical stream events -> the client's stream bytes, for one response."""

    content_type: bytes

    def encode(self, events: list[StreamEvent]) -> bytes: ...

    def finish(self, usage: Usage | None) -> bytes:
        """The stream's end (e.g. ``data: [DONE]``), after the upstream ended normally."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """An in-band error, once the response has started."""
        ...


class ChatFront(Protocol):
    """A client API that asks for chat: Chat Completions, Responses and Messages."""

    name: str
    takes_chat_bytes: bool  # True: an OpenAI-compatible upstream's bytes may go to the client unchanged

    def parse(self, body: dict[str, Any]) -> ChatRequest: ...

    def encode_result(self, result: ChatResult | RawChatResult, model: str) -> bytes: ...

    def stream_encoder(self, body: Mapping[str, Any], model: str) -> StreamEncoder: ...

    def error_response(self, err: GatewayError) -> tuple[int, Headers, bytes]: ...


class EmbeddingsFront(Protocol):
    name: str

    def parse(self, body: dict[str, Any]) -> EmbeddingsRequest: ...

    def encode_result(self, result: EmbeddingsResult, model: str, req: EmbeddingsRequest) -> bytes: ...

    def error_response(self, err: GatewayError) -> tuple[int, Headers, bytes]: ...
