"""Ollama's native API: ``POST /api/chat`` (NDJSON stream) and ``POST /api/embed``.

Ollama streams by default, so ``stream`` is always sent explicitly. Tool calls
arrive whole (arguments as an object, no ids); the adapter gives them ids and
turns the arguments into the JSON string that OpenAI clients expect.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from providers.base import Deployment, FailureReason, UpstreamFailure, UpstreamRequest, Usage, Unsupported
from providers.openai import openai_failure
from providers.openai_wire import ChunkWriter, chat_completion, embedding_list, message_text

DEFAULT_BASE = "http://localhost:11434"
_OPTIONS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop",
            "max_tokens": "num_predict", "max_completion_tokens": "num_predict",
            "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty"}
_FINISH = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}


class OllamaAdapter:
    kind = "ollama_chat"
    stream_content_type = "text/event-stream"
    required_params: tuple[str, ...] = ()

    def _url(self, dep: Deployment, path: str) -> str:
        base = (dep.api_base or DEFAULT_BASE).rstrip("/")
        return f"{base}{path}"

    def chat_request(self, dep: Deployment, body: dict[str, Any], stream: bool) -> UpstreamRequest:
        if (body.get("n") or 1) > 1:
            raise Unsupported(self.kind, "n > 1")
        out: dict[str, Any] = {
            "model": dep.model,
            "messages": [_message(m) for m in body.get("messages") or []],
            "stream": stream,
        }
        options = {ollama: body[openai] for openai, ollama in _OPTIONS.items() if body.get(openai) is not None}
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

    def chat_response(self, dep: Deployment, raw: bytes) -> tuple[bytes, Usage]:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or "message" not in data:
            raise ValueError("Ollama answered without a message")
        msg = data["message"]
        calls = _tool_calls(msg.get("tool_calls"))
        message: dict[str, Any] = {"role": "assistant", "content": msg.get("content") or ("" if not calls else None)}
        if calls:
            message["tool_calls"] = calls
        usage = _usage(data)
        finish = "tool_calls" if calls else _FINISH.get(data.get("done_reason") or "stop", "stop")
        return chat_completion(dep.model_name, message, finish, usage), usage

    def stream_decoder(self, dep: Deployment, include_usage: bool) -> "OllamaStreamDecoder":
        return OllamaStreamDecoder(dep.model_name, include_usage)

    def embeddings_request(self, dep: Deployment, body: dict[str, Any]) -> UpstreamRequest:
        out: dict[str, Any] = {"model": dep.model, "input": body.get("input")}
        if body.get("dimensions"):
            out["dimensions"] = body["dimensions"]
        return UpstreamRequest("POST", self._url(dep, "/api/embed"), {"Content-Type": "application/json"},
                               orjson.dumps(out))

    def embeddings_response(self, dep: Deployment, raw: bytes, encoding_format: str | None = None) -> tuple[bytes, Usage]:
        data = orjson.loads(raw)
        usage = Usage(input_tokens=int(data.get("prompt_eval_count") or 0))
        return embedding_list(data.get("embeddings") or [], dep.model_name, usage.input_tokens, encoding_format), usage

    def error(self, dep: Deployment, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamFailure:
        return openai_failure(status, headers, raw)  # Ollama's {"error": "..."} is read there too


class OllamaStreamDecoder:
    """NDJSON lines from ``/api/chat`` -> OpenAI chunk events."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.done = False
        self.failure: UpstreamFailure | None = None
        self.text: list[str] = []
        self._writer = ChunkWriter(model)
        self._started = False
        self._tool_index = 0
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()
        out: list[bytes] = []
        for line in lines:
            if line.strip():
                out.extend(self._line(line))
        return out

    def close(self) -> list[bytes]:
        rest, self._buf = self._buf, b""
        return self._line(rest) if rest.strip() else []

    def _line(self, line: bytes) -> list[bytes]:
        if self.done or self.failure:
            return []
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.failure = UpstreamFailure(FailureReason.PROTOCOL, 200, "invalid JSON line in Ollama stream")
            return []
        if "error" in obj:
            self.failure = UpstreamFailure(FailureReason.SERVER_ERROR, 200, str(obj["error"]))
            return []
        out: list[bytes] = []
        msg = obj.get("message") or {}
        delta: dict[str, Any] = {}
        if not self._started:
            self._started = True
            delta["role"] = "assistant"
        if msg.get("content"):
            delta["content"] = msg["content"]
            self.text.append(msg["content"])
        calls = _tool_calls(msg.get("tool_calls"), start=self._tool_index)
        if calls:
            delta["tool_calls"] = [{"index": self._tool_index + i, **c} for i, c in enumerate(calls)]
            self._tool_index += len(calls)
            self.text.extend(c["function"]["arguments"] for c in calls)
        if delta:
            out.append(self._writer.delta(delta))
        if obj.get("done"):
            self.done = True
            self.usage = _usage(obj)
            finish = "tool_calls" if self._tool_index else _FINISH.get(obj.get("done_reason") or "stop", "stop")
            out.append(self._writer.finish(finish))
            if self.include_usage:
                out.append(self._writer.usage(self.usage))
        return out


def _message(m: dict[str, Any]) -> dict[str, Any]:
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
    return url.split(",", 1)[1]


def _json_object(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            return {}
    return arguments or {}


def _tool_calls(calls: Any, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(calls or []):
        fn = call.get("function") or {}
        args = fn.get("arguments")
        out.append({
            "id": call.get("id") or f"call_{start + i}",
            "type": "function",
            "function": {"name": fn.get("name", ""), "arguments": args if isinstance(args, str) else orjson.dumps(args or {}).decode()},
        })
    return out


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(input_tokens=int(data.get("prompt_eval_count") or 0), output_tokens=int(data.get("eval_count") or 0))
