"""Fake Anthropic API (`POST /v1/messages`, `POST /v1/messages/count_tokens`).

Strict like the real service: `x-api-key` and `anthropic-version` are required;
`max_tokens` is required; unknown top-level fields, empty text blocks, a
`tool_result` without its `tool_use`, tool blocks without `tools`, and a thinking
budget under 1024 or not below `max_tokens` get 400 `invalid_request_error`.
Errors are `{"type": "error", "error": {"type", "message"}}`; "503" behaves as
Anthropic's 529 `overloaded_error`.

Usage is in Anthropic's semantics: `input_tokens` EXCLUDES cache reads and writes.
A `cache_control` block caches the prompt up to it (tools, system, messages in
that order, without the 1024-token minimum): the first request writes it
(`cache_creation_input_tokens`, split by TTL in `cache_creation`), later ones read
it (`cache_read_input_tokens`). `billed` keeps OpenAI semantics (input includes cached).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from .common import (
    TOOL_ARGUMENT_PIECES,
    TOOL_ARGUMENTS,
    TOOL_OUTPUT_TOKENS,
    BaseFake,
    Behaviour,
    Event,
    Usage,
    count_words,
    reply_words,
    stream_pieces,
)
from .server import Exchange

KNOWN_FIELDS = frozenset({"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
                          "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
                          "container", "mcp_servers"})
BLOCK_TYPES = frozenset({"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking", "document"})
FAILURES = {"429": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
            "500": (500, "api_error", "Internal server error"),
            "503": (529, "overloaded_error", "Overloaded")}


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400, error_type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def _blocks(content: Any, where: str) -> list[dict]:
    if isinstance(content, str):
        if not content:
            raise Invalid(f"{where}: text content blocks must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise Invalid(f"{where}: Input should be a valid list")
    for i, b in enumerate(content):
        if not isinstance(b, dict) or b.get("type") not in BLOCK_TYPES:
            raise Invalid(f"{where}.{i}: Input tag '{b.get('type') if isinstance(b, dict) else b}' found using "
                          "'type' does not match any of the expected tags")
        if b["type"] == "text" and not b.get("text"):
            raise Invalid(f"{where}.{i}: text content blocks must be non-empty")
    return content


def validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise Invalid("Request body must be a JSON object")
    for key in body:
        if key not in KNOWN_FIELDS:
            raise Invalid(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str):
        raise Invalid("model: Field required")
    limit = body.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise Invalid("max_tokens: Field required")
    if "system" in body and not isinstance(body["system"], str):
        _blocks(body["system"], "system")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: Field required")
    tool_uses: set[str] = set()
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        for b in _blocks(m.get("content"), f"messages.{i}.content"):
            if b["type"] in ("tool_use", "tool_result") and not body.get("tools"):
                raise Invalid("Requests which include `tool_use` or `tool_result` blocks must define tools.")
            if b["type"] == "tool_use":
                tool_uses.add(b.get("id"))
            if b["type"] == "tool_result" and b.get("tool_use_id") not in tool_uses:
                raise Invalid(f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                              f"{b.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                              "`tool_use` block in the previous message.")
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024 or budget >= limit:
            raise Invalid("thinking.budget_tokens: must be >= 1024 and less than max_tokens")


def _texts(block: dict) -> list[str]:
    if block.get("type") == "text":
        return [block["text"]]
    if block.get("type") == "tool_result":
        content = block.get("content", "")
        return [content] if isinstance(content, str) else [p.get("text", "") for p in content]
    return []


def prompt_blocks(body: dict) -> list[dict]:
    system = body.get("system")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
    for m in body["messages"]:
        blocks += _blocks(m["content"], "messages")
    return blocks


def input_tokens(body: dict) -> int:
    return sum(count_words(t) for b in prompt_blocks(body) for t in _texts(b))


def cache_prefix(body: dict) -> tuple[str, int, str]:
    """The prompt up to the last cache_control block, its tokens and its TTL."""
    blocks = prompt_blocks(body)
    marks = [i for i, b in enumerate(blocks) if isinstance(b.get("cache_control"), dict)]
    if not marks:
        return "", 0, ""
    prefix = blocks[:marks[-1] + 1]
    ttl = str(blocks[marks[-1]]["cache_control"].get("ttl") or "5m")
    tokens = sum(count_words(t) for b in prefix for t in _texts(b))
    return json.dumps(prefix, sort_keys=True), tokens, ttl


def chosen_tool(body: dict) -> str | None:
    tools = body.get("tools") or []
    last = body["messages"][-1]["content"]
    if not tools or (isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)):
        return None
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "none":
        return None
    return choice.get("name") or tools[0]["name"]


class AnthropicFake(BaseFake):
    def __init__(self, name: str = "anthropic", api_key: str = "sk-ant-fake"):
        super().__init__(name)
        self.api_key = api_key
        self.prompt_cache: set[str] = set()

    async def handle(self, ex: Exchange) -> None:
        try:
            await self._handle(ex)
        except Invalid as exc:
            await self.send_error(ex, exc.status, exc.error_type, exc.message)

    async def send_error(self, ex: Exchange, status: int, error_type: str, message: str,
                         headers: dict | None = None) -> None:
        await ex.send_json(status, {"type": "error", "error": {"type": error_type, "message": message}},
                           {"request-id": "req_" + secrets.token_hex(12), **(headers or {})})

    async def _handle(self, ex: Exchange) -> None:
        route = (ex.method, ex.path.rstrip("/"))
        if route not in {("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")}:
            raise Invalid(f"Not Found: {ex.method} {ex.path}", 404, "not_found_error")
        if ex.headers.get("x-api-key") != self.api_key:
            raise Invalid("invalid x-api-key", 401, "authentication_error")
        if not ex.headers.get("anthropic-version"):
            raise Invalid("anthropic-version: header is required")
        if ex.json_error is not None:
            raise Invalid("There was an error parsing the body of your request as JSON")
        body = ex.json
        if route[1] == "/v1/messages/count_tokens":
            validate({**body, "max_tokens": 1} if isinstance(body, dict) else body)
            await ex.send_json(200, {"input_tokens": input_tokens(body)})
            return
        validate(body)
        if body["model"].startswith("unknown"):
            raise Invalid(f"model: {body['model']}", 404, "not_found_error")
        tool = chosen_tool(body)
        usage = self.usage_for(input_tokens(body), TOOL_OUTPUT_TOKENS if tool else len(reply_words(self.name)))
        ttl = ""
        prefix, prefix_tokens, ttl = cache_prefix(body)
        if prefix_tokens and prefix in self.prompt_cache:
            usage = Usage(usage.input_tokens, usage.output_tokens, cached_tokens=prefix_tokens)
        elif prefix_tokens:
            self.prompt_cache.add(prefix)
            usage = Usage(usage.input_tokens, usage.output_tokens, cache_write_tokens=prefix_tokens)
        b = self.next_behaviour()
        if await self.misbehave(ex, b, bool(body.get("stream"))):
            return
        if body.get("stream"):
            await self.stream(ex, body["model"], tool, usage, ttl, b)
        else:
            self.bill(usage)
            await ex.send_json(200, self.message(body["model"], tool, usage, ttl), {"request-id": "req_1"})

    async def misbehave(self, ex: Exchange, b: Behaviour | None, stream: bool) -> bool:
        if b is None:
            return False
        if b.kind == "hang":
            await self.hang(ex)
        elif b.kind in FAILURES or (b.kind == "midstream_error" and not stream):
            status, error_type, message = FAILURES.get(b.kind, FAILURES["500"])
            headers = {"retry-after": str(b.kw.get("retry_after", 1))} if b.kind == "429" else {}
            await self.send_error(ex, status, error_type, message, headers)
        elif b.kind == "drop" and not stream:
            await ex.abort()
        else:
            return False
        return True

    @staticmethod
    def usage_body(u: Usage, ttl: str, output_tokens: int | None = None) -> dict:
        write = u.cache_write_tokens
        return {"input_tokens": u.input_tokens - u.cached_tokens - write, "cache_creation_input_tokens": write,
                "cache_read_input_tokens": u.cached_tokens,
                "cache_creation": {"ephemeral_5m_input_tokens": write if ttl != "1h" else 0,
                                   "ephemeral_1h_input_tokens": write if ttl == "1h" else 0},
                "output_tokens": u.output_tokens if output_tokens is None else output_tokens}

    def message(self, model: str, tool: str | None, usage: Usage, ttl: str) -> dict:
        content = ([{"type": "tool_use", "id": "toolu_01fake", "name": tool, "input": dict(TOOL_ARGUMENTS)}] if tool
                   else [{"type": "text", "text": " ".join(reply_words(self.name))}])
        return {"id": "msg_" + secrets.token_hex(12), "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
                "usage": self.usage_body(usage, ttl)}

    async def stream(self, ex: Exchange, model: str, tool: str | None, usage: Usage, ttl: str,
                     b: Behaviour | None) -> None:
        def ev(kind: str, payload: dict, content: bool = False, tokens: int = 0) -> Event:
            data = json.dumps({"type": kind, **payload})
            return Event(f"event: {kind}\ndata: {data}\n\n".encode(), content, tokens)

        start = {**self.message(model, tool, usage, ttl), "content": [], "stop_reason": None}
        start["usage"] = self.usage_body(usage, ttl, output_tokens=1)
        events = [ev("message_start", {"message": start}), ev("ping", {})]
        if tool:
            events.append(ev("content_block_start", {"index": 0, "content_block": {
                "type": "tool_use", "id": "toolu_01fake", "name": tool, "input": {}}}))
            per_piece = TOOL_OUTPUT_TOKENS // len(TOOL_ARGUMENT_PIECES)
            events += [ev("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                                        "partial_json": piece}}, True, per_piece)
                       for piece in TOOL_ARGUMENT_PIECES]
        else:
            events.append(ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
            events += [ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}},
                          True, 1) for piece in stream_pieces(self.name)]
        events.append(ev("content_block_stop", {"index": 0}))
        events.append(ev("message_delta", {"delta": {"stop_reason": "tool_use" if tool else "end_turn",
                                                     "stop_sequence": None},
                                           "usage": {"output_tokens": usage.output_tokens}}))
        events.append(ev("message_stop", {}))
        error = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
        await ex.start(200, "text/event-stream", {"request-id": "req_1"})
        await self.run_stream(ex, events, usage, b, error)
