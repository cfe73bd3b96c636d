"""Bedrock Converse wire shapes and the pure OpenAI -> Converse request translation.

Nothing here does I/O or imports botocore. :func:`converse_body` turns a
canonical chat body into a Converse request body; the tables below hold the wire facts the
adapter maps through (stop reasons, error types) and :func:`usage_from_bedrock`
normalises Bedrock's token accounting to OpenAI's.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, TypedDict

import orjson

from providers.base import FailureReason, Unsupported, Usage, token_count
from providers.canonical import FinishReason

KIND = "bedrock"


class ConverseMessage(TypedDict):
    role: str  # "user" | "assistant"
    content: list[dict[str, Any]]  # {text} | {image} | {toolUse} | {toolResult}


class ConverseRequest(TypedDict, total=False):
    messages: list[ConverseMessage]
    system: list[dict[str, Any]]
    inferenceConfig: dict[str, Any]  # maxTokens, temperature, topP, stopSequences
    toolConfig: dict[str, Any]  # tools: [{toolSpec}], toolChoice


# The answer-changing chat parameters Converse honours (the rest are refused, never dropped).
SUPPORTED_PARAMS = frozenset({"tools", "tool_choice", "stop", "temperature", "top_p", "max_tokens",
                              "max_completion_tokens"})

# Converse stopReason -> canonical finish reason.
STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

# Bedrock error type, lower-cased -> failure reason. One table for the
# x-amzn-errortype header (ThrottlingException) and for event-stream exception
# frames (throttlingException).
ERROR_TYPES: dict[str, FailureReason] = {
    "throttlingexception": FailureReason.RATE_LIMITED,
    "servicequotaexceededexception": FailureReason.RATE_LIMITED,
    "validationexception": FailureReason.BAD_REQUEST,
    "accessdeniedexception": FailureReason.AUTH,
    "unrecognizedclientexception": FailureReason.AUTH,
    "invalidsignatureexception": FailureReason.AUTH,
    "incompletesignatureexception": FailureReason.AUTH,
    "expiredtokenexception": FailureReason.AUTH,
    "missingauthenticationtokenexception": FailureReason.AUTH,
    "resourcenotfoundexception": FailureReason.NOT_FOUND,
    "modeltimeoutexception": FailureReason.TIMEOUT,
    "modelerrorexception": FailureReason.SERVER_ERROR,
    "modelstreamerrorexception": FailureReason.SERVER_ERROR,
    "internalserverexception": FailureReason.SERVER_ERROR,
    "serviceunavailableexception": FailureReason.UNAVAILABLE,
    "modelnotreadyexception": FailureReason.UNAVAILABLE,
}

# OpenAI request fields with no Converse equivalent that are safe to drop.
# Fields that would change the answer if dropped raise Unsupported instead.
_REFUSED: dict[str, str] = {
    "functions": "the legacy 'functions' parameter (use 'tools')",
    "function_call": "the legacy 'function_call' parameter (use 'tool_choice')",
    "audio": "audio output",
    "top_logprobs": "logprobs",
}

_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
_DATA_URL = re.compile(r"data:image/([\w.+-]+);base64,(.*)", re.DOTALL)
_SYSTEM_ROLES = frozenset({"system", "developer"})


def unsupported(feature: str) -> Unsupported:
    return Unsupported(KIND, feature)


def converse_body(body: Mapping[str, Any]) -> ConverseRequest:
    """The Converse request for an OpenAI chat body. Raises Unsupported."""
    for name, feature in _REFUSED.items():
        if body.get(name):
            raise unsupported(feature)
    if body.get("n") not in (None, 1):
        raise unsupported("n > 1")
    if body.get("logprobs"):
        raise unsupported("logprobs")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise unsupported("a request without messages")

    system, turns = _messages(messages)
    out: ConverseRequest = {"messages": turns}
    if system:
        out["system"] = system
    inference = _inference_config(body)
    if inference:
        out["inferenceConfig"] = inference
    tool_config = _tool_config(body.get("tools"), body.get("tool_choice"))
    if tool_config is not None:
        out["toolConfig"] = tool_config
    elif any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"]):
        # Converse rejects toolUse/toolResult blocks without a toolConfig.
        raise unsupported("tool calls in the history without tools (or with tool_choice 'none')")
    return out


def _messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[ConverseMessage]]:
    system: list[dict[str, Any]] = []
    turns: list[ConverseMessage] = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise unsupported("a message that is not an object")
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            content = message.get("content")
            for part in content if isinstance(content, list) else [content]:
                system.extend({"text": t} for t in _texts(part if part is None or isinstance(part, str) else [part]))
                if (point := _cache_point(part)) and system:
                    system.append(point)
            continue
        if role == "user":
            blocks = _content_blocks(message.get("content"))
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"))
            blocks.extend(_tool_use(call) for call in message.get("tool_calls") or ())
        elif role == "tool":
            blocks = [_tool_result(message)]
            role = "user"
        else:
            raise unsupported(f"messages with role {role!r}")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:  # Converse wants alternating roles
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _texts(content: Any) -> list[str]:
    """The non-empty texts of string or text-part content (system, tool results)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    texts = []
    for part in content:
        if not isinstance(part, Mapping) or part.get("type") != "text":
            raise unsupported(f"content parts of type {_part_type(part)!r} here")
        if part.get("text"):
            texts.append(part["text"])
    return texts


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": t} for t in _texts(content)]
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = _part_type(part)
        if kind == "text":
            if part.get("text"):  # Converse rejects blank text blocks
                blocks.append({"text": part["text"]})
            if (point := _cache_point(part)) and blocks:
                blocks.append(point)
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url")))
        else:
            raise unsupported(f"content parts of type {kind!r}")
    return blocks


def _cache_point(part: Any) -> dict[str, Any] | None:
    """A part's (Anthropic-style) ``cache_control: {type: "ephemeral", ttl?: "5m"|"1h"}`` as the Converse
    ``cachePoint`` to put after it, with its TTL."""
    control = part.get("cache_control") if isinstance(part, Mapping) else None
    if not isinstance(control, Mapping):
        return None
    ttl = control.get("ttl")
    if ttl is not None and ttl not in ("5m", "1h"):
        raise unsupported(f"cache_control ttl {ttl!r} (Bedrock takes '5m' or '1h')")
    return {"cachePoint": {"type": "default", **({"ttl": ttl} if ttl == "1h" else {})}}  # 5m is the default


def _part_type(part: Any) -> str | None:
    return part.get("type") if isinstance(part, Mapping) else type(part).__name__


def _image(image_url: Any) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    match = _DATA_URL.fullmatch(url.strip()) if isinstance(url, str) else None
    if match is None:
        raise unsupported("image URLs other than base64 data URLs")
    fmt = _IMAGE_FORMATS.get(match.group(1).lower())
    if fmt is None:
        raise unsupported(f"images of type image/{match.group(1)}")
    return {"image": {"format": fmt, "source": {"bytes": match.group(2)}}}


def _tool_use(call: Mapping[str, Any]) -> dict[str, Any]:
    if call.get("type", "function") != "function":
        raise unsupported(f"tool calls of type {call.get('type')!r}")
    function = call.get("function") or {}
    arguments = function.get("arguments") or ""
    try:
        parsed = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        raise unsupported("tool call arguments that are not a JSON object") from None
    if not isinstance(parsed, dict):
        raise unsupported("tool call arguments that are not a JSON object")
    return {"toolUse": {"toolUseId": call.get("id"), "name": function.get("name"), "input": parsed}}


def _tool_result(message: Mapping[str, Any]) -> dict[str, Any]:
    texts = _texts(message.get("content"))
    return {
        "toolResult": {
            "toolUseId": message.get("tool_call_id"),
            "content": [{"text": t} for t in texts] or [{"text": ""}],
        }
    }


def _inference_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif stop:
        config["stopSequences"] = list(stop)
    return config


def _tool_config(tools: Any, tool_choice: Any) -> dict[str, Any] | None:
    if not tools or tool_choice == "none":
        return None
    specs = []
    for tool in tools:
        if tool.get("type") != "function":
            raise unsupported(f"tools of type {tool.get('type')!r}")
        function = tool.get("function") or {}
        spec: dict[str, Any] = {
            "name": function.get("name"),
            "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}},
        }
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if tool_choice is not None:
        config["toolChoice"] = _tool_choice(tool_choice)
    return config


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"tool": {"name": name}}
    raise unsupported(f"tool_choice {choice!r}")


def usage_from_bedrock(usage: Mapping[str, Any] | None) -> Usage:
    """Bedrock's inputTokens excludes cache reads and writes; OpenAI's includes them.

    ``cacheDetails`` (``[{"ttl": "5m"|"1h", "inputTokens": n}]``) splits the cache
    writes by duration; as LiteLLM does, the split is used only when it accounts
    for every written token (else all writes are priced as 5-minute writes).
    """
    usage = usage or {}
    read = token_count(usage.get("cacheReadInputTokens"))
    write = token_count(usage.get("cacheWriteInputTokens"))
    details = usage.get("cacheDetails")
    write_1h = 0
    if isinstance(details, list):
        by_ttl = {ttl: sum(token_count(d.get("inputTokens")) for d in details if isinstance(d, Mapping)
                           and d.get("ttl") == ttl) for ttl in ("5m", "1h")}
        if by_ttl["5m"] + by_ttl["1h"] == write:
            write_1h = by_ttl["1h"]
    return Usage(
        input_tokens=token_count(usage.get("inputTokens")) + read + write,
        output_tokens=token_count(usage.get("outputTokens")),
        cached_input_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=write_1h,
    )
