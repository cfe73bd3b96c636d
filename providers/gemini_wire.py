"""Gemini's generateContent wire (Google AI Studio and Vertex AI): pure translation, no I/O.

:func:`gemini_body` turns a canonical chat body into a ``generateContent`` request;
:func:`result_from_gemini` and :func:`usage_from_gemini` read the answer back.

Usage (``usageMetadata``) in OpenAI's semantics: ``promptTokenCount`` already
includes ``cachedContentTokenCount``; output is ``candidatesTokenCount`` plus
``thoughtsTokenCount`` (Gemini counts thinking apart from the candidates).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import orjson

from providers.base import FailureReason, Unsupported, Usage
from providers.canonical import ChatResult, FinishReason, ToolCall

# The answer-changing chat parameters generateContent honours (the rest are refused, never dropped).
SUPPORTED_PARAMS = frozenset({"tools", "tool_choice", "stop", "temperature", "top_p", "max_tokens",
                              "max_completion_tokens", "seed", "response_format", "frequency_penalty",
                              "presence_penalty"})

FINISH_REASONS: Mapping[str, FinishReason] = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}

# google.rpc status -> failure reason
STATUS_REASONS: Mapping[str, FailureReason] = {
    "INVALID_ARGUMENT": FailureReason.BAD_REQUEST, "FAILED_PRECONDITION": FailureReason.BAD_REQUEST,
    "OUT_OF_RANGE": FailureReason.BAD_REQUEST, "UNAUTHENTICATED": FailureReason.AUTH,
    "PERMISSION_DENIED": FailureReason.AUTH, "NOT_FOUND": FailureReason.NOT_FOUND,
    "RESOURCE_EXHAUSTED": FailureReason.RATE_LIMITED, "UNAVAILABLE": FailureReason.UNAVAILABLE,
    "DEADLINE_EXCEEDED": FailureReason.TIMEOUT, "INTERNAL": FailureReason.SERVER_ERROR,
}

_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+);base64,(.*)$", re.S)
_TOOL_CHOICE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def unsupported(kind: str, feature: str) -> Unsupported:
    return Unsupported(kind, feature)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def _parts(kind: str, content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text":
            parts.append({"text": str(part.get("text", ""))})
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            found = _DATA_URL.match(str(url))
            if found is None:
                raise unsupported(kind, "image URLs other than data: URLs (send the image inline)")
            parts.append({"inlineData": {"mimeType": found.group(1), "data": found.group(2)}})
        else:
            raise unsupported(kind, f"message content of type '{part.get('type')}'")
    return parts


def _arguments(raw: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _contents(kind: str, messages: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:  # parallel tool results belong in one content
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system += _parts(kind, m.get("content"))
        elif role == "user":
            add("user", _parts(kind, m.get("content")))
        elif role == "assistant":
            parts = _parts(kind, m.get("content"))
            for call in m.get("tool_calls") or []:
                function = call.get("function") or {}
                names[str(call.get("id"))] = str(function.get("name") or "")
                parts.append({"functionCall": {"name": function.get("name"),
                                               "args": _arguments(function.get("arguments"))}})
            add("model", parts)
        elif role == "tool":
            name = names.get(str(m.get("tool_call_id")))
            if not name:
                raise unsupported(kind, "a tool message whose tool_call_id no earlier tool call has")
            text = _text(m.get("content"))
            parsed = _arguments(text)
            add("user", [{"functionResponse": {"name": name, "response": parsed or {"content": text}}}])
        else:
            raise unsupported(kind, f"messages with role '{role}'")
    return contents, ({"parts": system} if system else None)


def _tools(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tools = body.get("tools")
    if tools:
        declarations = []
        for tool in tools:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if not isinstance(function, Mapping) or tool.get("type") != "function":
                raise unsupported(kind, "tools other than functions")
            declaration: dict[str, Any] = {"name": function.get("name"), "description": function.get("description", "")}
            if function.get("parameters"):
                declaration["parametersJsonSchema"] = function["parameters"]
            declarations.append(declaration)
        out["tools"] = [{"functionDeclarations": declarations}]
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice in _TOOL_CHOICE:
        out["toolConfig"] = {"functionCallingConfig": {"mode": _TOOL_CHOICE[choice]}}
    elif isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
        out["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return out


def _generation_config(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
                         ("frequency_penalty", "frequencyPenalty"), ("presence_penalty", "presencePenalty")):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif fmt.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = (fmt.get("json_schema") or {}).get("schema") or {}
    return config


def gemini_body(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A ``generateContent`` request body for a canonical chat body."""
    contents, system = _contents(kind, list(body.get("messages") or []))
    if not contents:
        raise unsupported(kind, "a request without a user message")
    out: dict[str, Any] = {"contents": contents}
    if system is not None:
        out["systemInstruction"] = system
    out.update(_tools(kind, body))
    config = _generation_config(kind, body)
    if config:
        out["generationConfig"] = config
    return out


def usage_from_gemini(value: Any) -> Usage:
    if not isinstance(value, Mapping):  # usageMetadata
        return Usage()
    meta = value
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    return Usage(
        input_tokens=int(meta.get("promptTokenCount") or 0),  # includes the cached part
        output_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached_input_tokens=int(meta.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


def candidate_parts(data: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], str | None]:
    """The first candidate's parts and its finishReason."""
    candidates = data.get("candidates") or []
    if not candidates:
        return [], None
    first = candidates[0]
    return list((first.get("content") or {}).get("parts") or []), first.get("finishReason")


def finish_of(reason: str | None, has_calls: bool, blocked: bool = False) -> FinishReason:
    if blocked:
        return "content_filter"
    if has_calls and reason in (None, "STOP"):
        return "tool_calls"
    return FINISH_REASONS.get(str(reason), "stop")


def result_from_gemini(data: Mapping[str, Any]) -> ChatResult:
    parts, reason = candidate_parts(data)
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for part in parts:
        if "functionCall" in part:
            call = part["functionCall"]
            calls.append(ToolCall(f"call_{len(calls)}", str(call.get("name") or ""),
                                  orjson.dumps(call.get("args") or {}).decode()))
        elif "text" in part:
            (thoughts if part.get("thought") else texts).append(str(part["text"]))
    blocked = not data.get("candidates") and bool((data.get("promptFeedback") or {}).get("blockReason"))
    return ChatResult(
        text="".join(texts) if texts or not calls else None,
        finish_reason=finish_of(reason, bool(calls), blocked),
        usage=usage_from_gemini(data.get("usageMetadata")),
        tool_calls=tuple(calls),
        reasoning="".join(thoughts) or None,
        id=str(data["responseId"]) if data.get("responseId") else None,
    )
