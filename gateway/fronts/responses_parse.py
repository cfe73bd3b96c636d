"""OpenAI Responses request -> the canonical Chat Completions body (pure).

    instructions                      -> a system message, first
    input: "text"                     -> one user message
    input: [items]                    -> messages: ``message`` items (input_text, input_image,
                                         output_text parts), ``function_call`` items (merged into
                                         one assistant message with tool_calls), ``function_call_output``
                                         (a tool message); ``reasoning`` items are dropped
    tools [{type: function, name...}] -> Chat Completions tools (nested under ``function``)
    tool_choice, max_output_tokens, text.format, reasoning.effort, temperature, top_p,
    parallel_tool_calls               -> their Chat Completions equivalents

What cannot be translated honestly (hosted tools, ``background``, an unknown item)
is refused with a 400 naming it, never dropped. ``history`` holds the canonical
messages of the conversation that ``previous_response_id`` continues.
"""

from __future__ import annotations

from typing import Any, Mapping

from gateway.errors import BadRequest
from providers.base import MAX_USAGE_TOKENS
from providers.canonical import ChatMessage

# fields of a Responses request that only the gateway reads, or that change nothing upstream
_GATEWAY_FIELDS = frozenset({"model", "input", "instructions", "tools", "tool_choice", "max_output_tokens", "text",
                             "reasoning", "temperature", "top_p", "parallel_tool_calls", "store",
                             "previous_response_id", "stream", "metadata", "user", "include", "truncation",
                             "service_tier", "prompt_cache_key", "safety_identifier", "stream_options",
                             "top_logprobs", "max_tool_calls", "conversation", "background", "prompt"})


def _bad(message: str, param: str, code: str = "invalid_value") -> BadRequest:
    return BadRequest(message, param=param, code=code)


def _text_of(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    raise _bad(f"'{param}' must be a string or a list of content parts", param, "invalid_type")


def _parts(content: Any, param: str) -> str | list[dict[str, Any]]:
    """A message item's content as Chat Completions content (a string or parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"'{param}' must be a string or a list of content parts", param, "invalid_type")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"{param}[{i}]"
        if kind in ("input_text", "output_text", "text", "refusal"):
            text = part.get("text") if kind != "refusal" else part.get("refusal")
            if not isinstance(text, str):
                raise _bad(f"'{where}.text' must be a string", where + ".text", "invalid_type")
            parts.append({"type": "text", "text": text})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _bad(f"'{where}.image_url' must be a URL or a data URL (file_id is not supported)",
                           where + ".image_url")
            image: dict[str, Any] = {"url": url}
            if isinstance(part.get("detail"), str):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _bad(f"content part type {kind!r} at '{where}' is not supported by the gateway", where + ".type",
                       "unsupported_content")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def input_messages(value: Any) -> list[ChatMessage]:
    """The ``input`` field as canonical messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise _bad("'input' must be a string or a list of items", "input", "invalid_type")
    out: list[ChatMessage] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"'{where}' must be an object", where, "invalid_type")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"'{where}.role' must be user, assistant, system or developer", where + ".role")
            content = _parts(item.get("content"), where + ".content")
            if role in ("system", "developer") and not isinstance(content, str):
                content = _text_of(item.get("content"), where + ".content")
            out.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind == "function_call":
            call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
            if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
                raise _bad(f"'{where}' needs string call_id, name and arguments", where, "invalid_type")
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            last = out[-1] if out else None
            if last is not None and last.get("role") == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str):
                raise _bad(f"'{where}.call_id' must be a string", where + ".call_id", "invalid_type")
            out.append({"role": "tool", "tool_call_id": call_id, "content": _text_of(output, where + ".output")})
        elif kind == "reasoning":
            continue  # the upstream's own reasoning state; another provider cannot read it
        else:
            raise _bad(f"input item type {kind!r} at '{where}' is not supported by the gateway", where + ".type",
                       "unsupported_item")
    return out


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _bad("'tools' must be a list", "tools", "invalid_type")
    tools = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _bad(f"tool type {kind!r} at 'tools[{i}]' is not supported: only function tools are",
                       f"tools[{i}].type", "unsupported_tool")
        if not isinstance(tool.get("name"), str):
            raise _bad(f"'tools[{i}].name' must be a string", f"tools[{i}].name", "invalid_type")
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any) -> str | dict[str, Any]:
    if value in ("auto", "none", "required"):
        return str(value)
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
        return {"type": "function", "function": {"name": value["name"]}}
    raise _bad("'tool_choice' must be auto, none, required or {type: function, name}", "tool_choice")


def _response_format(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        raise _bad("'text' must be an object", "text", "invalid_type")
    fmt = value.get("format")
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        schema.setdefault("name", "response")
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("'text.format' must be text, json_object or json_schema with a schema", "text.format")


def to_chat(body: Mapping[str, Any], history: list[ChatMessage]) -> dict[str, Any]:
    """A Responses request body as a Chat Completions body."""
    if body.get("background") is True:
        raise _bad("'background' responses are not supported by the gateway", "background", "unsupported_parameter")
    if "input" not in body and not history:
        raise _bad("'input' is required", "input", "missing_required_parameter")
    messages: list[ChatMessage] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("'instructions' must be a string", "instructions", "invalid_type")
        messages.append({"role": "system", "content": instructions})
    messages.extend(m for m in history if m.get("role") != "system")  # instructions are not carried over
    messages.extend(input_messages(body.get("input", [])))
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        choice = _tool_choice(body["tool_choice"])
        if "tools" in chat or choice not in ("auto", "none"):  # without tools, auto and none mean nothing
            chat["tool_choice"] = choice
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_USAGE_TOKENS:
            raise _bad(f"'max_output_tokens' must be an integer from 1 to {MAX_USAGE_TOKENS}", "max_output_tokens",
                       "invalid_type")
        chat["max_tokens"] = limit
    if body.get("text") is not None:
        fmt = _response_format(body["text"])
        if fmt is not None:
            chat["response_format"] = fmt
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        if reasoning["effort"] not in ("minimal", "low", "medium", "high", "none"):
            raise _bad("'reasoning.effort' must be minimal, low, medium or high", "reasoning.effort")
        chat["reasoning_effort"] = reasoning["effort"]
    for name in ("temperature", "top_p", "parallel_tool_calls"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("stream") is not None:
        if not isinstance(body["stream"], bool):
            raise _bad("'stream' must be a boolean", "stream", "invalid_type")
        chat["stream"] = body["stream"]
    return chat
