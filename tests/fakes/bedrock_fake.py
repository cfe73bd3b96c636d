"""Fake Bedrock Runtime: `POST /model/{modelId}/converse`, `/converse-stream`, and `/invoke`
(Titan embeddings only), every request SigV4-verified (see sigv4.py).

Errors are `{"message": ...}` with the status and an `x-amzn-ErrorType` header.
ConverseStream bodies are AWS event-stream frames (eventstream.py). Bedrock's
`inputTokens` EXCLUDES cache reads (`cacheReadInputTokens`); `billed` keeps OpenAI
semantics (input includes cached)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

from . import eventstream, sigv4
from .common import (
    EMBEDDING_DIMENSIONS,
    TOOL_ARGUMENT_PIECES,
    TOOL_ARGUMENTS,
    TOOL_OUTPUT_TOKENS,
    BaseFake,
    Behaviour,
    Event,
    Usage,
    count_words,
    embedding,
    reply_words,
    stream_pieces,
)
from .server import Exchange

_ROUTE = re.compile(r"/model/([^/]+)/(converse|converse-stream|invoke)")
TOOL_USE_ID = "tooluse_fake_1"
KNOWN_CONVERSE_FIELDS = frozenset({
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
    "additionalModelResponseFieldPaths", "promptVariables", "requestMetadata", "performanceConfig",
})
BLOCK_TYPES = frozenset({"text", "image", "document", "video", "toolUse", "toolResult", "guardContent",
                         "cachePoint", "reasoningContent", "citationsContent"})
INFERENCE_FIELDS = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
FAILURES = {"429": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
            "500": (500, "InternalServerException", "The server encountered an internal error."),
            "503": (503, "ServiceUnavailableException", "The service is temporarily unavailable. Try again.")}


class BedrockError(Exception):
    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def _invalid(message: str) -> BedrockError:
    return BedrockError(400, "ValidationException", message)


def validate_converse(body: Any) -> None:
    if not isinstance(body, dict):
        raise BedrockError(400, "SerializationException", "Start of structure or map found where not expected.")
    for key in body:
        if key not in KNOWN_CONVERSE_FIELDS:
            raise _invalid(f"Unknown parameter in input: \"{key}\", must be one of: "
                           + ", ".join(sorted(KNOWN_CONVERSE_FIELDS)))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("1 validation error detected: Value null at 'messages' failed to satisfy constraint: "
                       "Member must not be null")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise _invalid(f"1 validation error detected: Value at 'messages.{i + 1}.member.role' failed to "
                           "satisfy constraint: Member must satisfy enum value set: [user, assistant]")
        content = m.get("content")
        if not isinstance(content, list) or not content:
            raise _invalid(f"The content field in the Message object at messages.{i} is empty. Add a "
                           "ContentBlock object to the content field and try again.")
        for j, block in enumerate(content):
            if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in BLOCK_TYPES:
                raise _invalid(f"The content block at messages.{i}.content.{j} must set exactly one member.")
            if "text" in block and (not isinstance(block["text"], str) or not block["text"].strip()):
                raise _invalid(f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank. "
                               "Add text to the text field, and try again.")
        if i == 0 and m["role"] != "user":
            raise _invalid("A conversation must start with a user message. Try again with a conversation that "
                           "starts with a user message.")
        if i and m["role"] == messages[i - 1]["role"]:
            raise _invalid("A conversation must alternate between user and assistant roles. Make sure the "
                           "conversation alternates between user and assistant roles and try again.")
    _validate_tools(body, messages)
    system = body.get("system", [])
    if not isinstance(system, list) or any(not isinstance(b, dict) or len(b) != 1 for b in system):
        raise _invalid("The system field must be a list of SystemContentBlock objects.")
    inference = body.get("inferenceConfig", {})
    if not isinstance(inference, dict) or set(inference) - INFERENCE_FIELDS:
        raise _invalid("Unknown parameter in inferenceConfig, must be one of: maxTokens, temperature, topP, "
                       "stopSequences")
    for key, low, high in (("temperature", 0, 1), ("topP", 0, 1), ("maxTokens", 1, None)):
        value = inference.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            raise _invalid(f"1 validation error detected: Value '{value}' at 'inferenceConfig.{key}' failed to "
                           f"satisfy constraint: Member must have value greater than or equal to {low}")
        if high is not None and value > high:
            raise _invalid(f"1 validation error detected: Value '{value}' at 'inferenceConfig.{key}' failed to "
                           f"satisfy constraint: Member must have value less than or equal to {high}")


def _validate_tools(body: dict, messages: list[dict]) -> None:
    tool_config = body.get("toolConfig")
    if tool_config is not None:
        tools = tool_config.get("tools") if isinstance(tool_config, dict) else None
        if not isinstance(tools, list) or not tools:
            raise _invalid("1 validation error detected: Value at 'toolConfig.tools' failed to satisfy "
                           "constraint: Member must have length greater than or equal to 1")
        for k, t in enumerate(tools):
            spec = t.get("toolSpec") if isinstance(t, dict) else None
            if isinstance(t, dict) and "cachePoint" in t:
                continue
            if not isinstance(spec, dict) or not spec.get("name") or "json" not in (spec.get("inputSchema") or {}):
                raise _invalid(f"The toolSpec at toolConfig.tools.{k} needs a name and inputSchema.json.")
    pending: set[str] = set()
    for i, m in enumerate(messages):
        uses = [b["toolUse"] for b in m["content"] if "toolUse" in b]
        results = [b["toolResult"] for b in m["content"] if "toolResult" in b]
        if (uses or results) and tool_config is None:
            raise _invalid("The toolConfig field must be defined when using toolUse and toolResult content "
                           "blocks.")
        if m["role"] == "user":
            got = {r.get("toolUseId") for r in results}
            if pending - got:
                raise _invalid(f"Expected toolResult blocks at messages.{i}.content for the following Ids: "
                               + ", ".join(sorted(pending - got)))
            if got - pending:
                raise _invalid(f"The number of toolResult blocks at messages.{i}.content exceeds the number of "
                               "toolUse blocks of previous turn.")
            pending = set()
        else:
            pending = {u.get("toolUseId") for u in uses}


def converse_input_tokens(body: dict) -> int:
    total = sum(count_words(b.get("text")) for b in body.get("system", []))
    for m in body["messages"]:
        for block in m["content"]:
            total += count_words(block.get("text"))
            for part in (block.get("toolResult") or {}).get("content", []):
                total += count_words(part.get("text"))
    return total


def cache_prefix(body: dict) -> tuple[str, int]:
    """The prompt up to the last ``cachePoint`` block (system first, then messages), and its tokens.
    Like Bedrock's prompt caching, minus the minimum prefix length (1024 tokens for Claude)."""
    blocks = [*body.get("system", []), *(b for m in body["messages"] for b in m["content"])]
    points = [i for i, b in enumerate(blocks) if "cachePoint" in b]
    if not points:
        return "", 0
    prefix = blocks[:points[-1]]
    tokens = sum(count_words(b.get("text")) for b in prefix)
    tokens += sum(count_words(p.get("text")) for b in prefix for p in (b.get("toolResult") or {}).get("content", []))
    return json.dumps(prefix, sort_keys=True), tokens


def chosen_tool(body: dict) -> str | None:
    tools = [t["toolSpec"] for t in (body.get("toolConfig") or {}).get("tools", []) if "toolSpec" in t]
    if not tools or any("toolResult" in b for b in body["messages"][-1]["content"]):
        return None
    choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
    named = (choice.get("tool") or {}).get("name")
    return named or tools[0]["name"]


class BedrockFake(BaseFake):
    def __init__(self, name: str = "bedrock", access_key: str = "AKIDFAKE", secret_key: str = "fake-secret",
                 region: str = "us-east-1", session_token: str | None = None):
        super().__init__(name)
        self.prompt_cache: set[str] = set()  # prefixes written by a cachePoint (no expiry in tests)
        self.access_key, self.secret_key = access_key, secret_key
        self.region, self.session_token = region, session_token

    async def handle(self, ex: Exchange) -> None:
        try:
            await self._handle(ex)
        except BedrockError as exc:
            await self.send_error(ex, exc.status, exc.error_type, exc.message)

    async def send_error(self, ex: Exchange, status: int, error_type: str, message: str) -> None:
        await ex.send_json(status, {"message": message},
                           {"x-amzn-errortype": error_type, "x-amzn-requestid": str(uuid.uuid4())})

    async def _handle(self, ex: Exchange) -> None:
        problem = sigv4.verify(ex.method, ex.raw_path, ex.query_string, ex.header_pairs, ex.body,
                               access_key=self.access_key, secret_key=self.secret_key,
                               session_token=self.session_token, region=self.region)
        if problem is not None:
            raise BedrockError(problem.status, problem.error_type, problem.message)
        m = _ROUTE.fullmatch(ex.raw_path)
        if m is None or ex.method != "POST":
            raise BedrockError(404, "UnknownOperationException", "Unknown operation.")
        model_id, op = unquote(m.group(1)), m.group(2)
        if model_id.startswith("unknown"):
            raise BedrockError(404, "ResourceNotFoundException", f"Model not found: {model_id}.")
        if ex.json_error is not None:
            raise BedrockError(400, "SerializationException", "Could not parse the request body as JSON.")
        if op == "invoke":
            await self.invoke(ex, model_id)
            return
        body = ex.json
        validate_converse(body)
        tool = chosen_tool(body)
        output_tokens = TOOL_OUTPUT_TOKENS if tool else len(reply_words(self.name))
        usage = self.usage_for(converse_input_tokens(body), output_tokens)
        prefix, prefix_tokens = cache_prefix(body)
        if prefix_tokens:
            if prefix in self.prompt_cache:
                usage = Usage(usage.input_tokens, usage.output_tokens, cached_tokens=prefix_tokens)
            else:
                self.prompt_cache.add(prefix)
                usage = Usage(usage.input_tokens, usage.output_tokens, cache_write_tokens=prefix_tokens)
        b = self.next_behaviour()
        if await self.misbehave(ex, b, op == "converse-stream", usage):
            return
        if op == "converse":
            self.bill(usage)
            await ex.send_json(200, self.converse_body(tool, usage), {"x-amzn-requestid": str(uuid.uuid4())})
        else:
            await self.converse_stream(ex, tool, usage, b)

    async def misbehave(self, ex: Exchange, b: Behaviour | None, stream: bool, usage: Usage) -> bool:
        if b is None:
            return False
        if b.kind == "hang":
            await self.hang(ex)
        elif b.kind in FAILURES or (b.kind == "midstream_error" and not stream):
            status, error_type, message = FAILURES.get(b.kind, FAILURES["500"])
            headers = {"x-amzn-errortype": error_type}
            if b.kind == "429" and "retry_after" in b.kw:
                headers["retry-after"] = str(b.kw["retry_after"])
            await ex.send_json(status, {"message": message}, headers)
        elif b.kind == "drop" and not stream:
            self.bill(usage, output_tokens=0)
            await ex.abort()
        else:
            return False
        return True

    @staticmethod
    def usage_body(u: Usage) -> dict:
        body = {"inputTokens": u.input_tokens - u.cached_tokens - u.cache_write_tokens,
                "outputTokens": u.output_tokens, "totalTokens": u.input_tokens + u.output_tokens}
        if u.cached_tokens or u.cache_write_tokens:
            body.update(cacheReadInputTokens=u.cached_tokens, cacheWriteInputTokens=u.cache_write_tokens)
        return body

    def converse_body(self, tool: str | None, usage: Usage) -> dict:
        if tool:
            content = [{"toolUse": {"toolUseId": TOOL_USE_ID, "name": tool, "input": dict(TOOL_ARGUMENTS)}}]
        else:
            content = [{"text": " ".join(reply_words(self.name))}]
        return {"output": {"message": {"role": "assistant", "content": content}},
                "stopReason": "tool_use" if tool else "end_turn",
                "usage": self.usage_body(usage), "metrics": {"latencyMs": 42}}

    async def converse_stream(self, ex: Exchange, tool: str | None, usage: Usage, b: Behaviour | None) -> None:
        seq = iter(range(1000))

        def ev(event_type: str, payload: dict, content: bool = False, tokens: int = 0) -> Event:
            payload = {**payload, "p": eventstream.padding(next(seq))}
            return Event(eventstream.event_frame(event_type, payload), content, tokens)

        events = [ev("messageStart", {"role": "assistant"})]
        if tool:
            events.append(ev("contentBlockStart", {"contentBlockIndex": 0, "start": {
                "toolUse": {"toolUseId": TOOL_USE_ID, "name": tool}}}))
            per_piece = TOOL_OUTPUT_TOKENS // len(TOOL_ARGUMENT_PIECES)
            events += [ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}},
                          True, per_piece) for piece in TOOL_ARGUMENT_PIECES]
        else:
            events += [ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}, True, 1)
                       for piece in stream_pieces(self.name)]
        events.append(ev("contentBlockStop", {"contentBlockIndex": 0}))
        events.append(ev("messageStop", {"stopReason": "tool_use" if tool else "end_turn"}))
        events.append(ev("metadata", {"usage": self.usage_body(usage), "metrics": {"latencyMs": 42}}))
        error = eventstream.exception_frame("modelStreamErrorException", {
            "message": "Model stream error: the model produced an error mid-stream.",
            "originalStatusCode": 500, "originalMessage": "Internal error"})
        await ex.start(200, "application/vnd.amazon.eventstream", {"x-amzn-requestid": str(uuid.uuid4())})
        await self.run_stream(ex, events, usage, b, error)

    async def invoke(self, ex: Exchange, model_id: str) -> None:
        if not model_id.startswith("amazon.titan-embed"):
            raise _invalid("This fake only serves InvokeModel for amazon.titan-embed* models.")
        body = ex.json
        if not isinstance(body, dict) or not isinstance(body.get("inputText"), str):
            raise _invalid("Malformed input request: #: required key [inputText] not found, please reformat your "
                           "input and try again.")
        for key in body:
            if key not in ("inputText", "dimensions", "normalize", "embeddingTypes"):
                raise _invalid(f"Malformed input request: #: extraneous key [{key}] is not permitted, please "
                               "reformat your input and try again.")
        dims = body.get("dimensions", EMBEDDING_DIMENSIONS)
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            raise _invalid("Malformed input request: #/dimensions: expected a positive integer.")
        usage = Usage(count_words(body["inputText"]), 0)
        if await self.misbehave(ex, self.next_behaviour(), False, usage):
            return
        vector = embedding(body["inputText"], dims)
        self.bill(usage)
        started = time.monotonic()
        await ex.send_json(200, {"embedding": vector, "embeddingsByType": {"float": vector},
                                 "inputTextTokenCount": usage.input_tokens},
                           {"x-amzn-bedrock-input-token-count": str(usage.input_tokens),
                            "x-amzn-bedrock-invocation-latency": str(int((time.monotonic() - started) * 1000) + 1),
                            "x-amzn-requestid": str(uuid.uuid4())})
