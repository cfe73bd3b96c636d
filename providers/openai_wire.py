"""OpenAI wire shapes that several adapters build or read (pure helpers)."""

from __future__ import annotations

import base64
import struct
import time
import uuid
from typing import Any, Iterable

import orjson

from providers.base import Usage, token_count
from providers.canonical import ChatResult, ToolCall, finish_reason


def _count(obj: Any, key: str) -> int:
    return token_count(obj.get(key) if isinstance(obj, dict) else None)


def usage_from_openai(u: dict[str, Any] | None, service_tier: object = None) -> Usage | None:
    """A Chat Completions / Embeddings ``usage`` (and the response's ``service_tier``) as Usage."""
    if not isinstance(u, dict):
        return None
    prompt = u.get("prompt_tokens_details") or {}
    completion = u.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=token_count(u.get("prompt_tokens")),
        output_tokens=token_count(u.get("completion_tokens")),
        cached_input_tokens=token_count(prompt.get("cached_tokens")),
        reasoning_tokens=token_count(completion.get("reasoning_tokens")),
        audio_input_tokens=_count(prompt, "audio_tokens"),
        image_input_tokens=_count(prompt, "image_tokens"),
        audio_output_tokens=_count(completion, "audio_tokens"),
        service_tier=service_tier if isinstance(service_tier, str) else None,
    )


def result_from_openai(data: dict[str, Any], raw: bytes | None = None) -> ChatResult:
    """A Chat Completions response body as a canonical result (``raw`` kept for the pass-through)."""
    choices = data.get("choices")
    choice: dict[str, Any] = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    calls = tuple(
        ToolCall(str(c.get("id") or f"call_{i}"), str((c.get("function") or {}).get("name") or ""),
                 str((c.get("function") or {}).get("arguments") or ""))
        for i, c in enumerate(message.get("tool_calls") or ()) if isinstance(c, dict))
    content = message.get("content")
    return ChatResult(
        text=message_text(content) if content is not None else None,
        finish_reason=finish_reason(choice.get("finish_reason")),
        usage=usage_from_openai(data.get("usage"), data.get("service_tier")) or Usage(),
        tool_calls=calls,
        reasoning=message.get("reasoning_content") or message.get("reasoning") or None,
        id=data.get("id") if isinstance(data.get("id"), str) else None,
        raw=raw,
    )


def usage_to_openai(u: Usage) -> dict[str, Any]:
    prompt: dict[str, int] = {"cached_tokens": u.cached_input_tokens}
    completion: dict[str, int] = {"reasoning_tokens": u.reasoning_tokens}
    if u.audio_input_tokens:
        prompt["audio_tokens"] = u.audio_input_tokens
    if u.audio_output_tokens:
        completion["audio_tokens"] = u.audio_output_tokens
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": prompt,
        "completion_tokens_details": completion,
    }


def new_completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def chat_completion(
    model: str,
    message: dict[str, Any],
    finish_reason: str | None,
    usage: Usage,
    completion_id: str | None = None,
) -> bytes:
    return orjson.dumps(
        {
            "id": completion_id or new_completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": usage_to_openai(usage),
        }
    )


class ChunkWriter:
    """Builds ``chat.completion.chunk`` SSE events that share one id and created."""

    def __init__(self, model: str, usage_null: bool = False) -> None:
        self.id = new_completion_id()
        self.created = int(time.time())
        self.model = model
        self.usage_null = usage_null  # with include_usage, OpenAI puts "usage": null on every chunk

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None or self.usage_null:
            obj["usage"] = usage
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return self._event([{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}])

    def finish(self, finish_reason: str) -> bytes:
        return self.delta({}, finish_reason)

    def usage(self, usage: Usage) -> bytes:
        return self._event([], usage_to_openai(usage))


def embedding_list(
    vectors: Iterable[list[float]], model: str, input_tokens: int, encoding_format: str | None
) -> bytes:
    data = []
    for index, vector in enumerate(vectors):
        value: Any = vector
        if encoding_format == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": input_tokens, "total_tokens": input_tokens},
        }
    )


def message_text(content: Any) -> str:
    """The text of an OpenAI message ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)
