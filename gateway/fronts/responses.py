"""The OpenAI Responses front: ``POST /v1/responses``.

One instance serves one request (it carries the conversation that
``previous_response_id`` continues, and keeps what the gateway stores once the
answer is whole). Requests translate to the canonical Chat Completions body
(:mod:`gateway.fronts.responses_parse`); canonical results and stream events
become Responses objects and named SSE events
(:mod:`gateway.fronts.responses_stream`). Errors keep OpenAI's shape.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import orjson

from gateway.errors import GatewayError, error_body, error_headers
from gateway.fronts.base import Headers
from gateway.fronts.responses_parse import to_chat
from gateway.fronts.responses_items import call_item, message_item, new_id, reasoning_item, usage_object
from gateway.fronts.responses_stream import ResponsesStreamEncoder
from providers.base import Usage
from providers.canonical import ChatMessage, ChatRequest, ChatResult, RawChatResult


def assistant_message(output: list[dict[str, Any]]) -> ChatMessage:
    """The canonical assistant message for a response's output items (for the stored conversation)."""
    text = "".join(part.get("text", "") for item in output if item["type"] == "message" for part in item["content"])
    message: ChatMessage = {"role": "assistant", "content": text or None}
    calls = [{"id": i["call_id"], "type": "function", "function": {"name": i["name"], "arguments": i["arguments"]}}
             for i in output if i["type"] == "function_call"]
    if calls:
        message["tool_calls"] = calls
    return message


class ResponsesFront:
    name = "responses"
    takes_chat_bytes = False

    def __init__(self, history: list[ChatMessage] | None = None) -> None:
        self.history = history or []
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.request: dict[str, Any] = {}
        self.messages: list[ChatMessage] = []  # the canonical conversation sent upstream
        self.completed: dict[str, Any] | None = None  # the response object, once whole

    def parse(self, body: dict[str, Any]) -> ChatRequest:
        self.request = body
        chat = to_chat(body, self.history)
        self.messages = list(chat["messages"])
        return ChatRequest.of(chat)

    def response_object(self, model: str, status: str, output: list[dict[str, Any]],
                        usage: Usage | None, error: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self.request
        reasoning: dict[str, Any] = body["reasoning"] if isinstance(body.get("reasoning"), dict) else {}
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "error": error, "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": model, "output": output, "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": None},
            "store": body.get("store", True) is not False, "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "top_p": body.get("top_p", 1.0), "truncation": "disabled",
            "usage": usage_object(usage) if usage is not None else None, "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def finished(self, response: dict[str, Any]) -> None:
        """The whole response, as the stream encoder or encode_result built it."""
        self.completed = response

    def conversation(self) -> list[ChatMessage]:
        """The canonical conversation including this response's answer (what ``previous_response_id`` continues)."""
        assert self.completed is not None
        return [*self.messages, assistant_message(self.completed["output"])]

    def encode_result(self, result: ChatResult | RawChatResult, model: str) -> bytes:
        assert isinstance(result, ChatResult)  # takes_chat_bytes is False: adapters decode
        output: list[dict[str, Any]] = []
        if result.reasoning:
            output.append(reasoning_item(result.reasoning))
        if result.text:
            output.append(message_item(result.text))
        output.extend(call_item(c) for c in result.tool_calls)
        status = "incomplete" if result.finish_reason == "length" else "completed"
        response = self.response_object(model, status, output, result.usage)
        self.finished(response)
        return orjson.dumps(response)

    def stream_encoder(self, body: Mapping[str, Any], model: str) -> ResponsesStreamEncoder:
        return ResponsesStreamEncoder(self, model)

    def error_response(self, err: GatewayError) -> tuple[int, Headers, bytes]:
        return err.status, error_headers(err), error_body(err)
