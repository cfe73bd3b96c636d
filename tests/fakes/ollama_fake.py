"""Fake Ollama native API: `POST /api/chat` (NDJSON stream by default), `POST /api/embed`,
`GET /api/tags`, `GET /api/version`, `GET /`. No auth. Errors are `{"error": "..."}`.

Ollama decodes bodies into Go structs, so a message `content` that is not a string, or
tool-call `arguments` that are not an object (OpenAI sends a JSON string), is a 400."""

from __future__ import annotations

import datetime
from typing import Any

import orjson

from .common import (
    EMBEDDING_DIMENSIONS,
    TOOL_ARGUMENTS,
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

FAILURES = {"429": (429, "rate limit exceeded, please try again later"),
            "500": (500, "an internal error occurred while running the model"),
            "503": (503, "server busy, please try again.  maximum pending requests exceeded")}


class OllamaError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def full_name(model: str) -> str:
    return model if ":" in model else model + ":latest"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validate_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise OllamaError(400, "json: cannot unmarshal value into Go struct field ChatRequest.messages of type "
                               "[]api.Message")
    for m in messages:
        if not isinstance(m, dict):
            raise OllamaError(400, "json: cannot unmarshal value into Go value of type api.Message")
        if "content" in m and m["content"] is not None and not isinstance(m["content"], str):
            kind = "array" if isinstance(m["content"], list) else type(m["content"]).__name__
            raise OllamaError(400, f"json: cannot unmarshal {kind} into Go struct field Message.messages.content "
                                   "of type string")
        for tc in m.get("tool_calls") or []:
            args = (tc.get("function") or {}).get("arguments") if isinstance(tc, dict) else None
            if args is not None and not isinstance(args, dict):
                raise OllamaError(400, "json: cannot unmarshal string into Go struct field ToolCallFunction."
                                       "messages.tool_calls.function.arguments of type api.ToolCallFunctionArguments")


class OllamaFake(BaseFake):
    def __init__(self, name: str = "ollama", models=("llama3.2",)):
        super().__init__(name)
        self.models = tuple(models)

    async def handle(self, ex: Exchange) -> None:
        try:
            await self._handle(ex)
        except OllamaError as exc:
            await ex.send_json(exc.status, {"error": exc.message})

    async def _handle(self, ex: Exchange) -> None:
        route = (ex.method, ex.path)
        if route in (("GET", "/"), ("HEAD", "/")):
            await ex.respond(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif route == ("GET", "/api/version"):
            await ex.send_json(200, {"version": "0.12.0"})
        elif route == ("GET", "/api/tags"):
            await ex.send_json(200, {"models": [self.tag(m) for m in self.models]})
        elif route == ("POST", "/api/chat"):
            await self.chat(ex, self.model_of(ex))
        elif route == ("POST", "/api/embed"):
            await self.embed(ex, self.model_of(ex))
        else:
            await ex.respond(404, b"404 page not found", "text/plain")

    def model_of(self, ex: Exchange) -> str:
        if ex.json_error is not None or not isinstance(ex.json, dict):
            raise OllamaError(400, "invalid character in request body: expected a JSON object")
        model = ex.json.get("model")
        if not isinstance(model, str) or not model:
            raise OllamaError(400, "model is required")
        if full_name(model) not in {full_name(m) for m in self.models}:
            raise OllamaError(404, f'model "{model}" not found, try pulling it first')
        return model

    @staticmethod
    def tag(model: str) -> dict:
        return {"name": full_name(model), "model": full_name(model), "modified_at": "2025-01-01T00:00:00Z",
                "size": 2019393189, "digest": "a80c4f17acd5" + "0" * 52,
                "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                            "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}}

    async def misbehave(self, ex: Exchange, b: Behaviour | None, stream: bool, usage: Usage) -> bool:
        if b is None:
            return False
        if b.kind == "hang":
            await self.hang(ex)
        elif b.kind in FAILURES or (b.kind == "midstream_error" and not stream):
            status, message = FAILURES.get(b.kind, FAILURES["500"])
            headers = {"retry-after": str(b.kw["retry_after"])} if b.kind == "429" and "retry_after" in b.kw else {}
            await ex.send_json(status, {"error": message}, headers)
        elif b.kind == "drop" and not stream:
            self.bill(usage, output_tokens=0)
            await ex.abort()
        else:
            return False
        return True

    # -- /api/chat ----------------------------------------------------------------------
    async def chat(self, ex: Exchange, model: str) -> None:
        body = ex.json
        messages = body.get("messages") or []
        validate_messages(messages)
        if not messages:  # Ollama treats a chat without messages as "load the model"
            await ex.send_json(200, {"model": model, "created_at": now_rfc3339(),
                                     "message": {"role": "assistant", "content": ""},
                                     "done_reason": "load", "done": True})
            return
        tools = body.get("tools") or []
        tool = tools[0].get("function", {}).get("name") if tools and messages[-1].get("role") != "tool" else None
        usage = Usage(sum(count_words(m.get("content")) for m in messages),
                      TOOL_OUTPUT_TOKENS if tool else len(reply_words(self.name)))
        stream = body.get("stream", True) is not False
        b = self.next_behaviour()
        if await self.misbehave(ex, b, stream, usage):
            return
        if not stream:
            message = {"role": "assistant", "content": "" if tool else " ".join(reply_words(self.name))}
            if tool:
                message["tool_calls"] = [{"function": {"name": tool, "arguments": dict(TOOL_ARGUMENTS)}}]
            self.bill(usage)
            await ex.send_json(200, {"model": model, "created_at": now_rfc3339(), "message": message,
                                     **self.done_fields(usage)})
            return

        def line(message: dict, **extra: Any) -> bytes:
            return orjson.dumps({"model": model, "created_at": now_rfc3339(), "message": message, **extra}) + b"\n"

        if tool:
            call = {"function": {"name": tool, "arguments": dict(TOOL_ARGUMENTS)}}
            events = [Event(line({"role": "assistant", "content": "", "tool_calls": [call]}, done=False),
                            True, TOOL_OUTPUT_TOKENS)]
        else:
            events = [Event(line({"role": "assistant", "content": piece}, done=False), True, 1)
                      for piece in stream_pieces(self.name)]
        events.append(Event(line({"role": "assistant", "content": ""}, **self.done_fields(usage))))
        await ex.start(200, "application/x-ndjson")
        error = orjson.dumps({"error": "an error was encountered while running the model: unexpected EOF"}) + b"\n"
        await self.run_stream(ex, events, usage, b, error)

    @staticmethod
    def done_fields(u: Usage) -> dict:
        return {"done_reason": "stop", "done": True, "total_duration": 250_000_000, "load_duration": 20_000_000,
                "prompt_eval_count": u.input_tokens, "prompt_eval_duration": 30_000_000,
                "eval_count": u.output_tokens, "eval_duration": 190_000_000}

    # -- /api/embed -----------------------------------------------------------------------
    async def embed(self, ex: Exchange, model: str) -> None:
        value = ex.json.get("input")
        inputs = [value] if isinstance(value, str) else value
        if not isinstance(inputs, list) or not inputs or not all(isinstance(v, str) for v in inputs):
            raise OllamaError(400, "invalid input type")
        dims = ex.json.get("dimensions") or EMBEDDING_DIMENSIONS
        if not isinstance(dims, int) or dims < 1:
            raise OllamaError(400, "dimensions must be a positive integer")
        usage = Usage(sum(count_words(v) for v in inputs), 0)
        if await self.misbehave(ex, self.next_behaviour(), False, usage):
            return
        self.bill(usage)
        await ex.send_json(200, {"model": model, "embeddings": [embedding(v, dims) for v in inputs],
                                 "total_duration": 14_000_000, "load_duration": 1_000_000,
                                 "prompt_eval_count": usage.input_tokens})
