"""What a Chat Completions (or embeddings) client receives through one adapter.

Provider tests check an adapter together with the front that encodes its
canonical answers, exactly as the proxy path composes them: request bodies go
in as a client sends them, and what comes out is the client's wire (bytes).
"""

from __future__ import annotations

from typing import Any

from gateway.fronts.chat import ChatCompletionsFront, ChatStreamEncoder
from gateway.fronts.embeddings import OpenAIEmbeddingsFront
from providers.adapter import Adapter
from providers.base import Deployment, UpstreamFailure, UpstreamRequest, Usage
from providers.canonical import ChatRequest, StreamError

CHAT = ChatCompletionsFront()
EMBEDDINGS = OpenAIEmbeddingsFront()


def chat_request(adapter: Adapter, dep: Deployment, body: dict[str, Any], stream: bool) -> UpstreamRequest:
    return adapter.chat_request(dep, ChatRequest.of({**body, "stream": stream} if stream else body))


def chat_response(adapter: Adapter, dep: Deployment, raw: bytes) -> tuple[bytes, Usage]:
    result = adapter.chat_response(dep, raw, adapter.passthrough)
    return CHAT.encode_result(result, dep.model_name), result.usage


def embeddings_request(adapter: Adapter, dep: Deployment, body: dict[str, Any]) -> UpstreamRequest:
    return adapter.embeddings_request(dep, EMBEDDINGS.parse(body))


def embeddings_response(adapter: Adapter, dep: Deployment, raw: bytes, encoding_format: str | None = None,
                        body: dict[str, Any] | None = None) -> tuple[bytes, Usage]:
    req = EMBEDDINGS.parse({**(body or {}), **({"encoding_format": encoding_format} if encoding_format else {})})
    result = adapter.embeddings_response(dep, raw)
    return EMBEDDINGS.encode_result(result, dep.model_name, req), result.usage


class ClientStream:
    """An adapter's stream decoder behind the Chat Completions encoder: SSE events out."""

    def __init__(self, adapter: Adapter, dep: Deployment, include_usage: bool) -> None:
        self.decoder = adapter.stream_decoder(dep, adapter.passthrough)
        self.encoder = ChatStreamEncoder(dep.model_name, include_usage)
        self.failure: UpstreamFailure | None = None

    def _events(self, events: list[Any]) -> list[bytes]:
        if events and isinstance(events[-1], StreamError):
            self.failure = events[-1].failure
            events = events[:-1]
        data = self.encoder.encode(events)
        return [e + b"\n\n" for e in data.split(b"\n\n") if e]

    def feed(self, data: bytes) -> list[bytes]:
        return self._events(self.decoder.feed(data))

    def close(self) -> list[bytes]:
        return self._events(self.decoder.close())

    @property
    def usage(self) -> Usage | None:
        return self.decoder.usage

    @property
    def done(self) -> bool:
        return self.decoder.done

    @property
    def text(self) -> list[str]:
        return self.decoder.text
