"""Chat Completions and Embeddings as OpenAI speaks them; shared by the OpenAI (and
vLLM / llama.cpp) fake and the Azure fake, which differ in routing, auth, errors and a
few stream details (hooks at the bottom of `ChatCompletionsFake`)."""

from __future__ import annotations

import base64
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from .common import (
    EMBEDDING_DIMENSIONS,
    TOOL_ARGUMENT_PIECES,
    TOOL_ARGUMENTS_JSON,
    TOOL_OUTPUT_TOKENS,
    BaseFake,
    Behaviour,
    Event,
    Usage,
    count_words,
    embedding,
    reply_words,
    stream_pieces,
)
from .server import Exchange

KNOWN_CHAT_PARAMS = frozenset({
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
    "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "n",
    "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
    "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier", "seed",
    "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice", "tools",
    "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
})
KNOWN_EMBEDDING_PARAMS = frozenset({"input", "model", "encoding_format", "dimensions", "user"})
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
TOOL_CALL_ID = "call_fake_1"


class InvalidRequest(Exception):
    """A 4xx the provider returns in OpenAI's error shape."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 status: int = 400, type: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.type = message, param, code, status, type


def error_body(message: str, type: str | None, param: str | None = None, code: Any = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# -- requests -------------------------------------------------------------------------
def content_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return []


def chat_input_tokens(messages: list[dict]) -> int:
    return sum(count_words(t) for m in messages for t in content_texts(m.get("content")))


def validate_chat(body: Any, strict: bool, model_in_body: bool = True) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest("Invalid type for request body: expected an object.")
    if strict:
        for key in body:
            if key not in KNOWN_CHAT_PARAMS:
                raise InvalidRequest(f"Unrecognized request argument supplied: {key}")
    if model_in_body and (not isinstance(body.get("model"), str) or not body["model"]):
        raise InvalidRequest("you must provide a model parameter")
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("Invalid 'messages': empty array. Expected an array with minimum length 1, "
                             "but got an empty array instead.", param="messages", code="empty_array")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            role = m.get("role") if isinstance(m, dict) else None
            raise InvalidRequest(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                                 "'user', 'function', 'tool', and 'developer'.",
                                 param=f"messages[{i}].role", code="invalid_value")
    if strict:
        if "metadata" in body and body.get("store") is not True:
            raise InvalidRequest("The 'metadata' parameter is only allowed when 'store' is enabled.",
                                 param="metadata", code=None)
        if "stream_options" in body and body.get("stream_options") is not None and not body.get("stream"):
            raise InvalidRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                                 param="stream_options")
        _validate_tool_sequence(messages)
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not tools:
            raise InvalidRequest("Invalid 'tools': empty array. Expected an array with minimum length 1, "
                                 "but got an empty array instead.", param="tools", code="empty_array")
        for i, t in enumerate(tools):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidRequest(f"Missing required parameter: 'tools[{i}].function.name'.",
                                     param=f"tools[{i}].function.name", code="missing_required_parameter")
    if strict and body.get("tool_choice") is not None and not tools:
        raise InvalidRequest("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                             "are specified.", param="tool_choice")


def _validate_tool_sequence(messages: list[dict]) -> None:
    open_ids: set[str] = set()
    for i, m in enumerate(messages):
        if m["role"] == "tool":
            if "tool_call_id" not in m:
                raise InvalidRequest(f"Missing required parameter: 'messages[{i}].tool_call_id'.",
                                     param=f"messages[{i}].tool_call_id", code="missing_required_parameter")
            if m["tool_call_id"] not in open_ids:
                raise InvalidRequest("Invalid parameter: messages with role 'tool' must be a response to a "
                                     "preceeding message with 'tool_calls'.", param=f"messages.[{i}].role")
            open_ids.discard(m["tool_call_id"])
            continue
        if open_ids:
            raise InvalidRequest("An assistant message with 'tool_calls' must be followed by tool messages "
                                 "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                                 f"response messages: {', '.join(sorted(open_ids))}", param=f"messages.[{i}].role")
        if m["role"] == "assistant" and m.get("tool_calls"):
            open_ids = {tc.get("id") for tc in m["tool_calls"] if isinstance(tc, dict)}
        elif m["role"] in ("user", "system", "developer") and m.get("content") is None:
            raise InvalidRequest(f"Missing required parameter: 'messages[{i}].content'.",
                                 param=f"messages[{i}].content", code="missing_required_parameter")
    if open_ids:
        raise InvalidRequest("An assistant message with 'tool_calls' must be followed by tool messages "
                             "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                             f"response messages: {', '.join(sorted(open_ids))}",
                             param=f"messages.[{len(messages)}].role")


def chosen_tool(body: dict) -> str | None:
    """Name of the tool the fake calls, or None for a text answer."""
    tools, choice = body.get("tools") or [], body.get("tool_choice")
    if not tools or choice == "none" or body["messages"][-1].get("role") == "tool":
        return None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return choice["function"].get("name") or tools[0]["function"]["name"]
    return tools[0]["function"]["name"]


def usage_body(u: Usage) -> dict:
    return {
        "prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens, "total_tokens": u.total,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def embedding_inputs(value: Any) -> list[tuple[str, int]] | None:
    """[(hash key, tokens)] per input; None when the shape is invalid."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, int) for v in value):
        return [(repr(value), len(value))]
    out = []
    for v in value:
        if isinstance(v, str) and v:
            out.append((v, count_words(v)))
        elif isinstance(v, list) and v and all(isinstance(t, int) for t in v):
            out.append((repr(v), len(v)))
        else:
            return None
    return out


@dataclass
class ChatCall:
    """One accepted chat request."""
    body: dict
    model: str
    tool: str | None
    usage: Usage
    id: str
    created: int
    streamed: int = 0  # output tokens put in chunks so far (vLLM continuous usage)

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def include_usage(self) -> bool:
        return bool((self.body.get("stream_options") or {}).get("include_usage"))


class ChatCompletionsFake(BaseFake):
    """Answers chat completions and embeddings once the subclass has routed and authorised."""

    strict = True  # reject unknown params, the metadata trap, bad tool sequences
    model_in_body = True  # False for Azure: the deployment in the path names the model
    sse_content_type = "text/event-stream; charset=utf-8"

    # -- errors (subclasses pick the shape) ---------------------------------------------
    async def send_error(self, ex: Exchange, status: int, message: str, *, type: str | None = None,
                         param: str | None = None, code: Any = None, headers: dict | None = None) -> None:
        await ex.send_json(status, error_body(message, type, param, code), headers)

    async def send_invalid(self, ex: Exchange, exc: InvalidRequest) -> None:
        await ex.send_json(exc.status, error_body(exc.message, exc.type, exc.param, exc.code))

    async def send_failure(self, ex: Exchange, b: Behaviour) -> None:
        """The 429 / 500 / 503 behaviours."""
        raise NotImplementedError

    async def misbehave(self, ex: Exchange, b: Behaviour | None, stream: bool, usage: Usage | None) -> bool:
        """Act out a queued behaviour that replaces the answer; True when it did."""
        if b is None:
            return False
        if b.kind == "hang":
            await self.hang(ex)
        elif b.kind in ("429", "500", "503") or (b.kind == "midstream_error" and not stream):
            await self.send_failure(ex, b if b.kind != "midstream_error" else Behaviour("500"))
        elif b.kind == "drop" and not stream:
            if usage is not None:
                self.bill(usage, output_tokens=0)
            await ex.abort()
        else:
            return False
        return True

    # -- chat ---------------------------------------------------------------------------
    async def chat(self, ex: Exchange, model: str) -> None:
        body = ex.json
        try:
            if ex.json_error is not None:
                raise InvalidRequest("We could not parse the JSON body of your request. (HINT: This likely means"
                                     " you aren't using your HTTP library correctly. The OpenAI API expects a JSON"
                                     " payload, but what was sent was not valid JSON.")
            validate_chat(body, self.strict, self.model_in_body)
            self.extra_chat_checks(body)
        except InvalidRequest as exc:
            await self.send_invalid(ex, exc)
            return
        tool = chosen_tool(body)
        usage = self.usage_for(chat_input_tokens(body["messages"]),
                               TOOL_OUTPUT_TOKENS if tool else len(reply_words(self.name)))
        call = ChatCall(body, model, tool, usage, self.completion_id(), int(time.time()))
        b = self.next_behaviour()
        if await self.misbehave(ex, b, call.stream, usage):
            return
        if not call.stream:
            self.bill(usage)
            await ex.send_json(200, self.completion(call), self.reply_headers())
            return
        await ex.start(200, self.sse_content_type, {"cache-control": "no-cache", **self.reply_headers()})
        events = [Event(self.sse(c), content, tokens) for c, content, tokens in self.chunks(call)]
        events.append(Event(b"data: [DONE]\n\n"))
        error = self.sse({"error": {"message": "The server had an error while processing your request. "
                                               "Sorry about that!", "type": "server_error", "param": None,
                                    "code": None}})
        await self.run_stream(ex, events, usage, b, error)

    @staticmethod
    def sse(obj: dict) -> bytes:
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def completion(self, call: ChatCall) -> dict:
        if call.tool:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": TOOL_CALL_ID, "type": "function",
                "function": {"name": call.tool, "arguments": TOOL_ARGUMENTS_JSON}}],
                "refusal": None, "annotations": []}
        else:
            message = {"role": "assistant", "content": " ".join(reply_words(self.name)),
                       "refusal": None, "annotations": []}
        choice = {"index": 0, "message": message, "logprobs": None,
                  "finish_reason": "tool_calls" if call.tool else "stop"}
        return self.decorate_completion({
            "id": call.id, "object": "chat.completion", "created": call.created, "model": call.model,
            "choices": [self.decorate_choice(choice)], "usage": self.reported(call.usage),
            "service_tier": "default", "system_fingerprint": "fp_fake0001",
        }, call)

    def chunks(self, call: ChatCall) -> list[tuple[dict, bool, int]]:
        """(chunk, is content event, output tokens it carries) in stream order."""
        deltas: list[tuple[dict, bool, int]] = []
        if call.tool:
            deltas.append(({"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": TOOL_CALL_ID, "type": "function",
                "function": {"name": call.tool, "arguments": ""}}], "refusal": None}, True, 0))
            per_piece = TOOL_OUTPUT_TOKENS // len(TOOL_ARGUMENT_PIECES)
            deltas += [({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}, True, per_piece)
                       for p in TOOL_ARGUMENT_PIECES]
        else:
            deltas.append(({"role": "assistant", "content": "", "refusal": None}, False, 0))
            deltas += [({"content": p}, True, 1) for p in stream_pieces(self.name)]
        finish = "tool_calls" if call.tool else "stop"
        out = []
        for i, (delta, content, tokens) in enumerate(deltas):
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            out.append((self.chunk(call, [self.decorate_choice(choice, delta=True)]), content, tokens))
        last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
        out.append((self.chunk(call, [self.decorate_choice(last, delta=True)]), False, 0))
        if call.include_usage or self.always_usage_chunk:
            out.append((self.chunk(call, [], usage=call.usage), False, 0))
        return self.prefix_chunks(call) + out

    def chunk(self, call: ChatCall, choices: list, usage: Usage | None = None) -> dict:
        c = {"id": call.id, "object": "chat.completion.chunk", "created": call.created, "model": call.model,
             "service_tier": "default", "system_fingerprint": "fp_fake0001", "choices": choices}
        if usage is not None:
            c["usage"] = self.reported(usage)
        elif call.include_usage:
            c["usage"] = None
        return self.decorate_chunk(c, call, usage)

    def reported(self, usage: Usage) -> dict:
        """The usage object as this upstream reports it (``usage_report`` overrides fields)."""
        return {**usage_body(usage), **(self.usage_report or {})}

    # -- embeddings ---------------------------------------------------------------------
    async def embeddings(self, ex: Exchange, model: str) -> None:
        body = ex.json
        try:
            if not isinstance(body, dict):
                raise InvalidRequest("We could not parse the JSON body of your request.")
            if self.strict:
                for key in body:
                    if key not in KNOWN_EMBEDDING_PARAMS:
                        raise InvalidRequest(f"Unrecognized request argument supplied: {key}")
            if "input" not in body:
                raise InvalidRequest("Missing required parameter: 'input'.", param="input")
            inputs = embedding_inputs(body["input"])
            if inputs is None:
                raise InvalidRequest("'$.input' is invalid. Please check the API reference: "
                                     "https://platform.openai.com/docs/api-reference.", param="input")
            fmt = body.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                raise InvalidRequest(f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'.",
                                     param="encoding_format", code="invalid_value")
            dims = body.get("dimensions", EMBEDDING_DIMENSIONS)
            if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
                raise InvalidRequest("Invalid 'dimensions': must be a positive integer.", param="dimensions")
        except InvalidRequest as exc:
            await self.send_invalid(ex, exc)
            return
        usage = Usage(sum(t for _, t in inputs), 0)
        if await self.misbehave(ex, self.next_behaviour(), False, usage):
            return
        data = []
        for i, (key, _) in enumerate(inputs):
            vec = embedding(key, dims)
            value = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if fmt == "base64" else vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        self.bill(usage)
        await ex.send_json(200, {"object": "list", "data": data, "model": model,
                                 "usage": {"prompt_tokens": usage.input_tokens,
                                           "total_tokens": usage.input_tokens}}, self.reply_headers())

    # -- hooks ----------------------------------------------------------------------------
    always_usage_chunk = False

    def completion_id(self) -> str:
        return "chatcmpl-" + uuid.uuid4().hex[:24]

    def reply_headers(self) -> dict:
        return {}

    def extra_chat_checks(self, body: dict) -> None:
        pass

    def prefix_chunks(self, call: ChatCall) -> list[tuple[dict, bool, int]]:
        return []

    def decorate_choice(self, choice: dict, delta: bool = False) -> dict:
        return choice

    def decorate_chunk(self, chunk: dict, call: ChatCall, usage: Usage | None) -> dict:
        return chunk

    def decorate_completion(self, body: dict, call: ChatCall) -> dict:
        return body
