"""Unary exchanges: one request, one whole answer (chat completions and embeddings).

The attempt loop (:mod:`gateway.proxy.attempts`) runs the schedule; these say
how one attempt calls the transport, how the answer becomes the front's body,
and what the client is sent once the attempt is recorded.
"""

from __future__ import annotations

from gateway.accounting.estimate import estimate_usage
from gateway.accounting.pricing import format_usd
from gateway.errors import GatewayError
from gateway.fronts.base import ChatFront, EmbeddingsFront
from gateway.proxy.attempts import Attempted
from gateway.proxy.call import Call
from gateway.proxy.respond import Send, send_bytes
from gateway.upstream.transport import Transport, UpstreamCallError
from providers.adapter import Adapter
from providers.base import (
    UPSTREAM_TOO_LARGE,
    Deployment,
    FailureReason,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
    usage_problem,
)
from providers.canonical import ChatRequest, EmbeddingsRequest


class _Unary:
    """What unary chat and embeddings share; subclasses build the request and encode the answer."""

    def __init__(self, call: Call, transport: Transport, send: Send) -> None:
        self.call = call
        self.transport = transport
        self.send = send
        self.body = b""
        self.upstream_model = ""  # the deployment's model, for a model-aware estimate

    def _encode(self, adapter: Adapter, dep: Deployment, raw: bytes) -> tuple[bytes, Usage]:
        raise NotImplementedError

    async def attempt(self, adapter: Adapter, dep: Deployment, up_req: UpstreamRequest) -> Attempted:
        self.upstream_model = dep.model
        try:
            reply = await self.transport.send(up_req, self.call.snapshot.unary_timeouts[dep.id])
        except UpstreamCallError as exc:
            if exc.failure.code == UPSTREAM_TOO_LARGE:  # the upstream did the work: estimate what it billed
                return Attempted(exc.failure, *self.interrupted())
            return Attempted(exc.failure)
        if reply.status >= 400:
            return Attempted(adapter.error(dep, reply.status, reply.headers, reply.body))
        try:
            self.body, usage = self._encode(adapter, dep, reply.body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            failure = UpstreamFailure(FailureReason.PROTOCOL, reply.status, f"unreadable upstream response ({exc})")
            return Attempted(failure)
        problem = usage_problem(usage)
        if problem is not None:  # never billed as reported; the prompt was seen, so estimate that
            failure = UpstreamFailure(FailureReason.PROTOCOL, reply.status, f"unusable upstream usage: {problem}")
            return Attempted(failure, *self.interrupted())
        return Attempted(None, usage, "provider")

    async def deliver(self, dep: Deployment, cost: int | None) -> None:
        headers = self.call.response_headers(dep)
        headers.append((b"x-request-cost-usd", format_usd(cost).encode() if cost is not None else b"0"))
        if cost is None:
            headers.append((b"x-request-cost-source", b"unpriced"))
        await send_bytes(self.send, 200, self.body, headers)

    async def abort(self, dep: Deployment, err: GatewayError) -> None:
        raise err  # never reached: a unary response is not committed before it is whole

    def interrupted(self) -> tuple[Usage | None, str]:
        # cancelled while the upstream worked on it: it saw the prompt, so count that, and say it is an estimate
        return estimate_usage(self.call.request.body, [], self.upstream_model), "estimated"


class UnaryChat(_Unary):
    def __init__(self, call: Call, transport: Transport, send: Send, front: ChatFront) -> None:
        super().__init__(call, transport, send)
        assert isinstance(call.request, ChatRequest)
        self.chat: ChatRequest = call.request
        self.front = front

    def upstream_request(self, adapter: Adapter, dep: Deployment) -> UpstreamRequest:
        return adapter.chat_request(dep, self.chat)

    def _encode(self, adapter: Adapter, dep: Deployment, raw: bytes) -> tuple[bytes, Usage]:
        passthrough = self.chat.hands_through(adapter.kind, adapter.passthrough and self.front.takes_chat_bytes)
        result = adapter.chat_response(dep, raw, passthrough)
        return self.front.encode_result(result, self.call.model), result.usage


class UnaryEmbeddings(_Unary):
    def __init__(self, call: Call, transport: Transport, send: Send, front: EmbeddingsFront) -> None:
        super().__init__(call, transport, send)
        assert isinstance(call.request, EmbeddingsRequest)
        self.embed: EmbeddingsRequest = call.request
        self.front = front

    def upstream_request(self, adapter: Adapter, dep: Deployment) -> UpstreamRequest:
        return adapter.embeddings_request(dep, self.embed)

    def _encode(self, adapter: Adapter, dep: Deployment, raw: bytes) -> tuple[bytes, Usage]:
        result = adapter.embeddings_response(dep, raw)
        return self.front.encode_result(result, self.call.model, self.embed), result.usage

