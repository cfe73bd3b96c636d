"""Anthropic Messages wire shapes (pure): the canonical chat body -> a Messages request,
and a Messages answer's usage and stop reason -> canonical values.

    system / developer messages       -> ``system`` text blocks (``cache_control`` kept)
    user content (text, image_url)    -> text and image blocks (a data URL -> a base64 source)
    assistant tool_calls              -> tool_use blocks; tool messages -> tool_result blocks
    tools, tool_choice                -> custom tools, {type: auto|any|tool|none}
    max_tokens (required by Anthropic; ``DEFAULT_MAX_TOKENS`` when absent), stop,
    temperature, top_p, reasoning_effort -> max_tokens, stop_sequences, ..., thinking budget
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from providers.base import Unsupported, Usage
from providers.canonical import FinishReason

KIND = "anthropic"
DEFAULT_MAX_TOKENS = 4096
# the answer-changing chat parameters the Messages API honours (the rest are refused, never dropped)
SUPPORTED_PARAMS = frozenset({"tools", "tool_choice", "stop", "temperature", "top_p", "max_tokens",
                              "max_completion_tokens", "reasoning_effort"})
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
STOP: dict[str, FinishReason] = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                                 "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop"}


def _text_block(part: Mapping[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": str(part.get("text") or "")}
    if isinstance(part.get("cache_control"), Mapping):
        block["cache_control"] = dict(part["cache_control"])
    return block


def _image_block(part: Mapping[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise Unsupported(KIND, "an image part without a URL")
    if url.startswith("data:") and ";base64," in url:
        media, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            if part.get("text"):  # Anthropic rejects empty text blocks
                blocks.append(_text_block(part))
        elif kind == "image_url":
            blocks.append(_image_block(part))
        else:
            raise Unsupported(KIND, f"content parts of type {kind!r}")
    return blocks


def _tool_use(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise Unsupported(KIND, "tool call arguments that are not a JSON object") from None
    return {"type": "tool_use", "id": str(call.get("id") or ""), "name": str(function.get("name") or ""),
            "input": value if isinstance(value, dict) else {}}


def _messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role") if isinstance(message, Mapping) else None
        if role in ("system", "developer"):
            system.extend(_blocks(message.get("content")))
            continue
        if role == "user":
            blocks = _blocks(message.get("content"))
        elif role == "assistant":
            blocks = []
            if message.get("reasoning_content"):
                pass  # a thinking block needs the upstream's signature, which another provider never gave
            blocks.extend(_blocks(message.get("content")))
            blocks.extend(_tool_use(c) for c in message.get("tool_calls") or ())
        elif role == "tool":
            text = message.get("content")
            content = text if isinstance(text, str) else [b for b in _blocks(text) if b["type"] == "text"]
            blocks = [{"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or ""),
                       "content": content}]
            role = "user"
        else:
            raise Unsupported(KIND, f"messages with role {role!r}")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:  # Anthropic wants alternating roles
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        return None
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping) and isinstance((choice.get("function") or {}).get("name"), str):
        return {"type": "tool", "name": choice["function"]["name"]}
    raise Unsupported(KIND, f"tool_choice {choice!r}")


def messages_body(body: Mapping[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """The Messages request for a canonical chat body. Raises Unsupported."""
    system, turns = _messages(list(body.get("messages") or ()))
    if not turns:
        raise Unsupported(KIND, "a request without user or assistant messages")
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": limit}
    if system:
        out["system"] = system
    if stream:
        out["stream"] = True
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    tools = body.get("tools")
    if tools:
        out["tools"] = [{"name": t["function"]["name"], "description": t["function"].get("description") or "",
                         "input_schema": t["function"].get("parameters") or {"type": "object"}}
                        for t in tools if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)]
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
    effort = body.get("reasoning_effort")
    if effort and effort != "none":
        budget = THINKING_BUDGETS.get(str(effort))
        if budget is None:
            raise Unsupported(KIND, f"reasoning_effort {effort!r}")
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        out["max_tokens"] = max(int(limit), budget + 1024)  # the budget must be below max_tokens
    return out


def usage_from_anthropic(u: Mapping[str, Any] | None, prior: Usage | None = None) -> Usage:
    """Anthropic's ``input_tokens`` excludes cache reads and writes; OpenAI's semantics include them.
    ``prior``: the usage so far in a stream (message_start), which message_delta updates."""
    u = u or {}
    base = prior or Usage()
    read = int(u["cache_read_input_tokens"] or 0) if "cache_read_input_tokens" in u else base.cached_input_tokens
    write = int(u["cache_creation_input_tokens"] or 0) if "cache_creation_input_tokens" in u \
        else base.cache_write_tokens
    plain = int(u["input_tokens"] or 0) if "input_tokens" in u \
        else base.input_tokens - base.cached_input_tokens - base.cache_write_tokens
    output = int(u["output_tokens"] or 0) if "output_tokens" in u else base.output_tokens
    split = u.get("cache_creation")
    write_1h = int(split.get("ephemeral_1h_input_tokens") or 0) if isinstance(split, Mapping) \
        else base.cache_write_1h_tokens
    return Usage(input_tokens=plain + read + write, output_tokens=output, cached_input_tokens=read,
                 cache_write_tokens=write, cache_write_1h_tokens=min(write_1h, write))
