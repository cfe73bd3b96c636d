"""Ollama's native API: ``POST /api/chat`` (NDJSON stream) and ``POST /api/embed``.

Ollama streams by default, so ``stream`` is always sent explicitly. Tool calls
arrive whole (arguments as an object, no ids); the adapter gives them ids and
turns the arguments into the JSON string that OpenAI clients expect.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from providers.base import (
    ApiKey,
    Credentials,
    Deployment,
    FailureReason,
    Unsupported,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
    token_count,
)
from providers.canonical import (
    ChatRequest,
    ChatResult,
    EmbeddingsRequest,
    EmbeddingsResult,
    Finish,
    FinishReason,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UsageReport,
)
from providers.openai import openai_failure
from providers.openai_wire import message_text

DEFAULT_BASE = "http://localhost:11434"
_OPTIONS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop",
            "max_tokens": "num_predict", "max_completion_tokens": "num_predict",
            "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty"}
_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}


class OllamaAdapter:
    kind = "ollama_chat"
    required_params: tuple[str, ...] = ()
    # tool_choice is honoured only as "auto" or "none" (neutral values); logprobs and
    # reasoning_effort have no equivalent here and are refused or routed elsewhere.
    supported_params: frozenset[str] | None = frozenset({*_OPTIONS, "tools", "response_format"})
    passthrough = False

    def credentials(self, params: Mapping[str, Any]) -> Credentials:
        return ApiKey()  # Ollama takes no key

    def _url(self, dep: Deployment, path: str) -> str:
        base = (dep.api_base or DEFAULT_BASE).rstrip("/")
        return f"{base}{path}"

    def chat_request(self, dep: Deployment, req: ChatRequest) -> UpstreamRequest:
        body = req.body
        out: dict[str, Any] = {
            "model": dep.model,
            "messages": [_message(m) for m in body.get("messages") or []],
            "stream": req.stream,
        }
        options = {ollama: body[openai] for openai, ollama in _OPTIONS.items()  # type: ignore[literal-required]
                   if body.get(openai) is not None}
        if options:
            out["options"] = options
        if body.get("tools") and body.get("tool_choice") != "none":
            out["tools"] = body["tools"]
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object":
            out["format"] = "json"
        elif fmt.get("type") == "json_schema":
            out["format"] = (fmt.get("json_schema") or {}).get("schema", "json")
        return UpstreamRequest("POST", self._url(dep, "/api/chat"), {"Content-Type": "application/json"},
                               orjson.dumps(out))

    def chat_response(self, dep: Deployment, raw: bytes, passthrough: bool = False) -> ChatResult:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or "message" not in data:
            raise ValueError("Ollama answered without a message")
        msg = data["message"]
        calls = _tool_calls(msg.get("tool_calls"))
        finish: FinishReason = "tool_calls" if calls else _FINISH.get(data.get("done_reason") or "stop", "stop")
        return ChatResult(msg.get("content") or ("" if not calls else None), finish, _usage(data), calls)

    def stream_decoder(self, dep: Deployment, passthrough: bool = False) -> "OllamaStreamDecoder":
        return OllamaStreamDecoder()

    def embeddings_request(self, dep: Deployment, req: EmbeddingsRequest) -> UpstreamRequest:
        out: dict[str, Any] = {"model": dep.model, "input": req.body.get("input")}
        if req.body.get("dimensions"):
            out["dimensions"] = req.body["dimensions"]
        return UpstreamRequest("POST", self._url(dep, "/api/embed"), {"Content-Type": "application/json"},
                               orjson.dumps(out))

    def embeddings_response(self, dep: Deployment, raw: bytes) -> EmbeddingsResult:
        data = orjson.loads(raw)
        return EmbeddingsResult(tuple(data.get("embeddings") or []),
                                Usage(input_tokens=token_count(data.get("prompt_eval_count"))))

    def error(self, dep: Deployment, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamFailure:
        return openai_failure(status, headers, raw)  # Ollama's {"error": "..."} is read there too


class OllamaStreamDecoder:
    """NDJSON lines from ``/api/chat`` -> canonical events."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.done = False
        self.text: list[str] = []
        self._failed = False
        self._tool_index = 0
        self._buf = b""

    def feed(self, data: bytes) -> list[StreamEvent]:
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()
        out: list[StreamEvent] = []
        for line in lines:
            if line.strip():
                out.extend(self._line(line))
        return out

    def close(self) -> list[StreamEvent]:
        rest, self._buf = self._buf, b""
        return self._line(rest) if rest.strip() else []

    def _line(self, line: bytes) -> list[StreamEvent]:
        if self.done or self._failed:
            return []
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._failed = True
            return [StreamError(UpstreamFailure(FailureReason.PROTOCOL, 200, "invalid JSON line in Ollama stream"))]
        if "error" in obj:
            self._failed = True
            return [StreamError(UpstreamFailure(FailureReason.SERVER_ERROR, 200, str(obj["error"])))]
        out: list[StreamEvent] = []
        msg = obj.get("message") or {}
        if msg.get("content"):
            out.append(TextDelta(msg["content"]))
            self.text.append(msg["content"])
        for call in _tool_calls(msg.get("tool_calls"), start=self._tool_index):
            out.append(ToolCallDelta(self._tool_index, call.arguments, call.id, call.name))
            self.text.append(call.arguments)
            self._tool_index += 1
        if obj.get("done"):
            self.done = True
            self.usage = _usage(obj)
            out.append(Finish("tool_calls" if self._tool_index
                              else _FINISH.get(obj.get("done_reason") or "stop", "stop")))
            out.append(UsageReport(self.usage))
        return out


def _message(m: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.get("role", "user"), "content": message_text(m.get("content"))}
    images = [_image(p) for p in m.get("content") or [] if isinstance(p, dict) and p.get("type") == "image_url"]
    if images:
        out["images"] = images
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {"function": {"name": c["function"]["name"], "arguments": _json_object(c["function"].get("arguments"))}}
            for c in m["tool_calls"]
        ]
    if m.get("role") == "tool" and m.get("name"):
        out["tool_name"] = m["name"]
    return out


def _image(part: dict[str, Any]) -> str:
    url = (part.get("image_url") or {}).get("url", "")
    if not url.startswith("data:") or "," not in url:
        raise Unsupported("ollama_chat", "image URLs other than base64 data: URLs")
    return str(url.split(",", 1)[1])


def _json_object(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            return {}
    return arguments or {}


def _tool_calls(calls: Any, start: int = 0) -> tuple[ToolCall, ...]:
    out = []
    for i, call in enumerate(calls or []):
        fn = call.get("function") or {}
        args = fn.get("arguments")
        out.append(ToolCall(str(call.get("id") or f"call_{start + i}"), str(fn.get("name", "")),
                            args if isinstance(args, str) else orjson.dumps(args or {}).decode()))
    return tuple(out)


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(input_tokens=token_count(data.get("prompt_eval_count")), output_tokens=token_count(data.get("eval_count")))
