"""OpenAI wire shapes that several adapters build or read (pure helpers)."""

from __future__ import annotations

import base64
import struct
import time
import uuid
from typing import Any, Iterable

import orjson

from providers.base import Usage


def usage_from_openai(u: dict[str, Any] | None) -> Usage | None:
    if not isinstance(u, dict):
        return None
    prompt = u.get("prompt_tokens_details") or {}
    completion = u.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(u.get("prompt_tokens") or 0),
        output_tokens=int(u.get("completion_tokens") or 0),
        cached_input_tokens=int(prompt.get("cached_tokens") or 0),
        reasoning_tokens=int(completion.get("reasoning_tokens") or 0),
    )


def usage_to_openai(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
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

    def __init__(self, model: str) -> None:
        self.id = new_completion_id()
        self.created = int(time.time())
        self.model = model

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
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
