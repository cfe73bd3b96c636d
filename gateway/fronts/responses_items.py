"""Responses API output items and usage, as the wire has them (pure helpers)."""

from __future__ import annotations

import os
from typing import Any

from providers.base import Usage
from providers.canonical import ToolCall


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(16).hex()}"


def usage_object(u: Usage | None) -> dict[str, Any]:
    u = u or Usage()
    return {"input_tokens": u.input_tokens, "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
            "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total_tokens}


def message_item(text: str, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    return {"id": item_id or new_id("msg"), "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def call_item(call: ToolCall, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    return {"id": item_id or new_id("fc"), "type": "function_call", "status": status, "call_id": call.id,
            "name": call.name, "arguments": call.arguments}


def reasoning_item(text: str, item_id: str | None = None) -> dict[str, Any]:
    return {"id": item_id or new_id("rs"), "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}] if text else []}
