"""Anthropic Messages request -> the canonical Chat Completions body (pure).

    system (string or text blocks)    -> a system message (text parts keep ``cache_control``)
    user blocks: text, image          -> a user message (image -> ``image_url``, a data URL for base64)
    user blocks: tool_result          -> tool messages, before the user's other blocks
    assistant blocks: text, tool_use, thinking -> an assistant message (tool_calls, reasoning_content)
    tools [{name, description, input_schema}] -> function tools; tool_choice auto|any|tool|none
    max_tokens, stop_sequences, temperature, top_p, thinking.budget_tokens -> their equivalents

``cache_control`` stays on the canonical text part it marks (LiteLLM's convention),
so that the Bedrock adapter can place a ``cachePoint`` after it. Server tools,
documents and other blocks the canonical form cannot carry are refused (400).
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from gateway.errors import BadRequest
from providers.base import MAX_USAGE_TOKENS
from providers.canonical import ChatMessage


def _bad(message: str, param: str | None = None) -> BadRequest:
    return BadRequest(message, param=param, code="invalid_request_error")


def _text_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(block.get("text"), str):
        raise _bad(f"{where}.text: must be a string", where + ".text")
    part: dict[str, Any] = {"type": "text", "text": block["text"]}
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _image_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
    elif isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _bad(f"{where}.source: must be a base64 or url image source", where + ".source")
    return {"type": "image_url", "image_url": {"url": url}}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}: must be a string or a list of content blocks", where)
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _bad(f"{where}.{i}: must be a content block with a type", f"{where}.{i}")
    return content


def _flatten(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if all(p["type"] == "text" and "cache_control" not in p for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tool_result_text(block: Mapping[str, Any], where: str) -> str:
    content = block.get("content", "")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _bad(f"{where}.content.{i}: only text tool results are supported", f"{where}.content.{i}")
            texts.append(str(part.get("text", "")))
        text = "".join(texts)
    else:
        raise _bad(f"{where}.content: must be a string or text blocks", where + ".content")
    return f"Error: {text}" if block.get("is_error") is True else text


def _user(content: Any, where: str) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, where)):
        kind, at = block["type"], f"{where}.{i}"
        if kind == "text":
            parts.append(_text_part(block, at))
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"{at}.tool_use_id: must be a string", at + ".tool_use_id")
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": _tool_result_text(block, at)})
        else:
            raise _bad(f"{at}: content block type '{kind}' is not supported by the gateway", at + ".type")
    if parts:
        out.append({"role": "user", "content": _flatten(parts)})
    return out


def _assistant(content: Any, where: str) -> ChatMessage:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, where)):
        kind, at = block["type"], f"{where}.{i}"
        if kind == "text":
            texts.append(_text_part(block, at)["text"])
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(f"{at}: tool_use needs a string id and name", at)
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"], "arguments": arguments}})
        elif kind in ("thinking", "redacted_thinking"):
            if isinstance(block.get("thinking"), str):
                reasoning.append(block["thinking"])
        else:
            raise _bad(f"{at}: content block type '{kind}' is not supported by the gateway", at + ".type")
    message: ChatMessage = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return message


def _system(value: Any) -> ChatMessage:
    if isinstance(value, str):
        return {"role": "system", "content": value}
    if not isinstance(value, list):
        raise _bad("system: must be a string or a list of text blocks", "system")
    parts = []
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(f"system.{i}: only text blocks are supported", f"system.{i}")
        parts.append(_text_part(block, f"system.{i}"))
    return {"role": "system", "content": _flatten(parts)}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools: must be a list", "tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) \
                or not isinstance(tool.get("input_schema"), dict):
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _bad(f"tools.{i}: only custom tools with a name and input_schema are supported"
                       + (f" (not '{kind}')" if kind else ""), f"tools.{i}")
        function = {"name": tool["name"], "parameters": tool["input_schema"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> str | dict[str, Any]:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("auto", "none"):
        return str(kind)
    if kind == "any":
        return "required"
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("tool_choice: must be {type: auto|any|none} or {type: tool, name}", "tool_choice")


def _effort(value: Any) -> str | None:
    """Extended thinking as a reasoning effort (what the canonical form carries)."""
    if not isinstance(value, dict) or value.get("type") != "enabled":
        return None
    budget = value.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
        raise _bad("thinking.budget_tokens: must be an integer of at least 1024", "thinking.budget_tokens")
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def messages_of(body: Mapping[str, Any]) -> list[ChatMessage]:
    """The system prompt and the conversation as canonical messages (count_tokens needs only these)."""
    messages: list[ChatMessage] = []
    if body.get("system") is not None:
        messages.append(_system(body["system"]))
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise _bad("messages: must be a non-empty list", "messages")
    for i, turn in enumerate(turns):
        where = f"messages.{i}"
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise _bad(f"{where}.role: must be 'user' or 'assistant'", where + ".role")
        if turn["role"] == "user":
            messages.extend(_user(turn.get("content"), where + ".content"))
        else:
            messages.append(_assistant(turn.get("content"), where + ".content"))
    return messages


def to_chat(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Messages request body as a Chat Completions body."""
    limit = body.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_USAGE_TOKENS:
        raise _bad(f"max_tokens: Field required (a positive integer, at most {MAX_USAGE_TOKENS})", "max_tokens")
    chat: dict[str, Any] = {"model": body["model"], "messages": messages_of(body), "max_tokens": limit}
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        choice = _tool_choice(body["tool_choice"])
        if "tools" in chat or choice not in ("auto", "none"):  # without tools, auto and none mean nothing
            chat["tool_choice"] = choice
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences: must be a list of strings", "stop_sequences")
        chat["stop"] = stops
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            if not isinstance(body[name], (int, float)) or isinstance(body[name], bool):
                raise _bad(f"{name}: must be a number", name)
            chat[name] = body[name]
    if body.get("top_k") is not None:
        raise _bad("top_k: not supported by the gateway's providers; leave it out", "top_k")
    effort = _effort(body.get("thinking"))
    if effort is not None:
        chat["reasoning_effort"] = effort
    if body.get("stream") is not None:
        if not isinstance(body["stream"], bool):
            raise _bad("stream: must be a boolean", "stream")
        chat["stream"] = body["stream"]
    return chat
