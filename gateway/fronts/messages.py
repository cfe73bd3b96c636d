"""The Anthropic Messages front: ``POST /v1/messages`` (and ``/v1/messages/count_tokens``).

Requests translate to the canonical Chat Completions body
(:mod:`gateway.fronts.messages_parse`); canonical results and stream events
become Anthropic messages and SSE events (:mod:`gateway.fronts.messages_stream`);
errors take Anthropic's shape and status codes (:mod:`gateway.fronts.messages_wire`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Mapping

import orjson

from gateway.errors import GatewayError
from gateway.fronts.base import Headers
from gateway.fronts.messages_parse import to_chat
from gateway.fronts.messages_stream import MessagesStreamEncoder
from gateway.fronts.messages_wire import STOP_REASONS, error_response, usage_object
from providers.canonical import ChatRequest, ChatResult, NativeBody, RawChatResult

FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")


def new_message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def tool_input(arguments: str) -> Any:
    """A tool call's JSON arguments as the ``input`` object (what a model sent that is not JSON stays a string)."""
    try:
        return orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}


class MessagesFront:
    """``headers``: the request's, for the pass-through to an Anthropic upstream (one instance
    per request then; the shared instance without headers serves errors and count_tokens)."""

    name = "messages"
    takes_chat_bytes = False

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self.headers = {h: headers[h] for h in FORWARDED_HEADERS if headers and headers.get(h)}

    def parse(self, body: dict[str, Any]) -> ChatRequest:
        request = ChatRequest.of(to_chat(body))
        return replace(request, native=NativeBody("anthropic", body, self.headers))

    def encode_result(self, result: ChatResult | RawChatResult, model: str) -> bytes:
        if isinstance(result, RawChatResult):  # an Anthropic upstream's own Messages body (the pass-through)
            return result.raw
        content: list[dict[str, Any]] = []
        if result.reasoning:
            content.append({"type": "thinking", "thinking": result.reasoning, "signature": ""})
        if result.text:
            content.append({"type": "text", "text": result.text})
        content.extend({"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(c.arguments)}
                       for c in result.tool_calls)
        return orjson.dumps({"id": new_message_id(), "type": "message", "role": "assistant", "model": model,
                             "content": content, "stop_reason": STOP_REASONS[result.finish_reason],
                             "stop_sequence": None, "usage": usage_object(result.usage)})

    def stream_encoder(self, body: Mapping[str, Any], model: str) -> MessagesStreamEncoder:
        return MessagesStreamEncoder(new_message_id(), model)

    def error_response(self, err: GatewayError) -> tuple[int, Headers, bytes]:
        return error_response(err)
