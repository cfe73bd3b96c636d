"""The agent client APIs at the edge: OpenAI Responses and Anthropic Messages.

Both run the same path as Chat Completions (``begin`` -> the one attempt loop ->
a unary or streamed exchange); only the front differs. What is particular here:

* ``POST /v1/responses`` continues a stored conversation (``previous_response_id``,
  read from the tenant's store before the request is routed, so the conversation
  reaches whichever provider the route picks) and, with ``store`` (the default),
  saves the finished response *before* its last byte goes out, so a client that
  chains at once always finds it. ``GET`` / ``DELETE /v1/responses/{id}``.
* ``POST /v1/messages/count_tokens``: the gateway's own estimate (tiktoken), no upstream call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping

import orjson

from gateway.accounting.estimate import count_tokens, estimate_usage
from gateway.config.identity import Tenant
from gateway.edge.http import send_json
from gateway.errors import BadRequest, GatewayError, NotFound, ServiceUnavailable
from gateway.fronts import conversations
from gateway.fronts.base import ChatFront
from gateway.fronts.messages_parse import messages_of
from gateway.fronts.responses import ResponsesFront
from gateway.proxy.attempts import AttemptLoop
from gateway.proxy.call import Call
from gateway.proxy.respond import Receive, Send
from gateway.proxy.streaming import StreamChat, until_disconnect
from gateway.proxy.unary import UnaryChat
from gateway.services import Services
from policies.decide import Decision
from providers.canonical import ChatRequest

log = logging.getLogger("taskgate")


def shutting_down() -> GatewayError:
    """What a request cut at the drain deadline gets (an error response, or in-band on a stream)."""
    return ServiceUnavailable("the gateway is shutting down and this request ran past its drain timeout "
                              "(server.drain_timeout_s); retry it", code="shutting_down", retry_after=1)


async def run_chat(call: Call, decision: Decision, services: Services, front: ChatFront, send: Send,
                   receive: Receive) -> None:
    """One chat call through the attempt loop, streamed or unary, in ``front``'s wire."""
    if isinstance(call.request, ChatRequest) and call.request.stream:
        exchange = StreamChat(call, services.transport, send, front)
        try:
            await until_disconnect(receive, AttemptLoop(call, decision, services, exchange).run())
        except asyncio.CancelledError:
            if not exchange.started_response:
                raise
            log.warning("a stream was cut at the drain deadline (server.drain_timeout_s)")
            await exchange.abort_in_band(shutting_down())  # the stream ends with an error event
    else:
        await AttemptLoop(call, decision, services, UnaryChat(call, services.transport, send, front)).run()


async def chained_task(services: Services, tenant: Tenant, body: Mapping[str, Any]) -> str | None:
    """Without ``previous_response_id``: the task of the response whose function call this
    request answers (a client that resends the whole conversation each turn)."""
    items = body.get("input")
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and item.get("type") == "function_call_output" \
                and isinstance(item.get("call_id"), str):
            return await conversations.task_of_call(services.store, tenant.name, item["call_id"])
    return None


async def previous(services: Services, tenant: Tenant, body: Mapping[str, Any]) -> conversations.Stored | None:
    """The stored response that ``previous_response_id`` names, in this tenant's store."""
    prev = body.get("previous_response_id")
    if prev is None:
        return None
    if not isinstance(prev, str) or not prev:
        raise BadRequest("'previous_response_id' must be a string", param="previous_response_id",
                         code="invalid_type")
    stored = await conversations.load(services.store, tenant.name, prev)
    if stored is None:
        raise NotFound(f"Previous response with id '{prev}' not found.", param="previous_response_id",
                       code="previous_response_not_found")
    return stored


def storing_send(send: Send, services: Services, tenant: Tenant, front: ResponsesFront, call_task: str,
                 retention_s: int) -> Send:
    """``send``, saving the finished response just before the response's last body message."""

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False) \
                and front.completed is not None and front.completed["status"] != "failed":
            stored = conversations.Stored(front.completed, front.conversation(), call_task)
            await conversations.save(services.store, tenant.name, stored, retention_s)
        await send(message)

    return wrapped


async def get_response(services: Services, tenant: Tenant, response_id: str, send: Send) -> None:
    stored = await conversations.load(services.store, tenant.name, response_id)
    if stored is None:
        raise NotFound(f"Response with id '{response_id}' not found.", code="response_not_found")
    await send_json(send, 200, stored.response)


async def delete_response(services: Services, tenant: Tenant, response_id: str, send: Send) -> None:
    if not await conversations.delete(services.store, tenant.name, response_id):
        raise NotFound(f"Response with id '{response_id}' not found.", code="response_not_found")
    await send_json(send, 200, {"id": response_id, "object": "response", "deleted": True})


async def count_message_tokens(body: dict[str, Any], models: Mapping[str, Any], send: Send) -> None:
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, estimated with the gateway's tokenizer."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: Field required", param="model")
    if model not in models:
        raise NotFound(f"model: {model}", param="model", code="model_not_found")
    tokens = estimate_usage({"messages": messages_of(body)}, []).input_tokens
    if isinstance(body.get("tools"), list) and body["tools"]:
        tokens += count_tokens(orjson.dumps(body["tools"]).decode())
    await send_json(send, 200, {"input_tokens": tokens})
