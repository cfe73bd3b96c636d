"""The Anthropic Messages front: ``POST /v1/messages`` (and ``/v1/messages/count_tokens``).

Requests translate to the canonical Chat Completions body
(:mod:`gateway.fronts.messages_parse`); canonical results and stream events
become Anthropic messages and SSE events (:mod:`gateway.fronts.messages_stream`);
errors take Anthropic's shape and status codes (:mod:`gateway.fronts.messages_wire`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import orjson

from gateway.errors import GatewayError
from gateway.fronts.base import Headers
from gateway.fronts.messages_parse import to_chat
from gateway.fronts.messages_stream import MessagesStreamEncoder
from gateway.fronts.messages_wire import STOP_REASONS, error_response, usage_object
from providers.canonical import ChatRequest, ChatResult, RawChatResult


def new_message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def tool_input(arguments: str) -> Any:
    """A tool call's JSON arguments as the ``input`` object (what a model sent that is not JSON stays a string)."""
    try:
        return orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}


class MessagesFront:
    name = "messages"
    takes_chat_bytes = False

    def parse(self, body: dict[str, Any]) -> ChatRequest:
        return ChatRequest.of(to_chat(body))

    def encode_result(self, result: ChatResult | RawChatResult, model: str) -> bytes:
        assert isinstance(result, ChatResult)  # takes_chat_bytes is False: adapters decode
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
