"""``demo``: a built-in local provider for the quick start, a deterministic test double.

No model runs. Like LiteLLM's ``mock_response``, the answer is fixed text that
quotes the request, so a fresh install gives one priced answer, a task and a
dashboard with no key and no external service. It speaks OpenAI's wire at the
pseudo-URL ``demo://local/v1``; the gateway's transport answers that URL itself
(``gateway/upstream/demo.py``) with :func:`answer`.

Markers in the last user message make sample failures (``taskgate demo`` uses them):
``[demo:fail]`` answers 503 every time; ``[demo:flaky]`` answers 503 the first time a
given text is seen and then succeeds (a retry).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Mapping

from providers.openai import OpenAIAdapter

DEMO_BASE = "demo://local/v1"
FAIL, FLAKY = "[demo:fail]", "[demo:flaky]"
LABEL = ("This is Taskgate's demo model, a deterministic test double (like LiteLLM's mock_response): "
         "no real model ran.")


class DemoAdapter(OpenAIAdapter):
    kind = "demo"
    default_base = DEMO_BASE
    keeps_metadata_with_store = False
    # what answer() honours; any other answer-changing parameter is refused (400), never dropped
    supported_params: frozenset[str] | None = frozenset(
        {"max_tokens", "max_completion_tokens", "stop", "temperature", "top_p", "seed"})


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def last_user_text(body: Mapping[str, Any]) -> str:
    messages = body.get("messages") or []
    users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """About 4 characters a token, plus 4 a message: deterministic, close to a real tokenizer."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, Mapping)]
    return sum(len(_text(m.get("content"))) for m in messages) // 4 + 4 * len(messages)


def answer(body: Mapping[str, Any]) -> tuple[str, str, int, int]:
    """The reply text, its finish reason and the usage (prompt, completion tokens) for a request body."""
    asked = " ".join(last_user_text(body).split())
    quoted = asked if len(asked) <= 120 else asked[:117] + "..."
    words = f"{LABEL} You asked: \"{quoted}\"".split(" ")
    finish = "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(words):
        words, finish = words[:limit], "length"
    text = " ".join(words)
    stops = body.get("stop")
    for stop in [stops] if isinstance(stops, str) else stops if isinstance(stops, list) else []:
        if isinstance(stop, str) and stop and stop in text:
            text, finish = text[:text.index(stop)], "stop"
    return text, finish, prompt_tokens(body), max(1, len(text.split()))


def completion_id(body: Mapping[str, Any]) -> str:
    return "chatcmpl-demo-" + hashlib.sha256(repr(body.get("messages")).encode()).hexdigest()[:24]


def completion(body: Mapping[str, Any]) -> dict[str, Any]:
    text, finish, p, c = answer(body)
    return {"id": completion_id(body), "object": "chat.completion", "created": int(time.time()),
            "model": str(body.get("model") or "demo"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}


def chunks(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The same answer as Chat Completions stream chunks (a word each), usage last when asked for."""
    text, finish, p, c = answer(body)
    base = {"id": completion_id(body), "object": "chat.completion.chunk", "created": int(time.time()),
            "model": str(body.get("model") or "demo")}
    out = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        out.append({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        out.append({**base, "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c,
                                                     "total_tokens": p + c}})
    return out
