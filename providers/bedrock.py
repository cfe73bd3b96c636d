"""The AWS Bedrock adapter: Converse, ConverseStream and Titan embeddings (InvokeModel).

Pure translation, no I/O. Requests are signed with SigV4 (service ``bedrock``);
streams arrive as AWS event-stream frames and leave as OpenAI SSE chunks.
botocore is imported lazily, on the first request signed or stream decoded, so
importing this module stays cheap.

The model id is percent-quoted once in the URL path (``:`` -> ``%3A``); botocore
quotes the path again for the canonical request (``%253A``), which is what AWS
computes from the raw path it receives, so we sign exactly the URL we send.
"""

from __future__ import annotations

import base64
import functools
import re
import struct
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import quote

import orjson

from providers.base import (
    Deployment,
    FailureReason,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
    parse_retry_after,
    reason_for_status,
    sse_event,
)
from providers.openai_wire import usage_to_openai
from providers.bedrock_wire import (
    ERROR_TYPES,
    KIND,
    STOP_REASONS,
    converse_body,
    unsupported,
    usage_from_bedrock,
)

__all__ = ["BedrockAdapter", "BedrockStreamDecoder", "sign"]

_SIGNING_NAME = "bedrock"
_JSON = "application/json"
_EVENTSTREAM = "application/vnd.amazon.eventstream"
_MAX_MESSAGE = 500  # characters of an upstream error message passed on
_TITAN_EMBED = re.compile(r"(?:[a-z]+\.)?amazon\.titan-embed-")  # optional geography prefix


@functools.cache
def _botocore_auth() -> tuple[Any, Any, Any]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    return SigV4Auth, AWSRequest, Credentials


@functools.cache
def _botocore_eventstream() -> tuple[Any, type[Exception]]:
    from botocore.eventstream import EventStreamBuffer, ParserError

    return EventStreamBuffer, ParserError


def _secret(value: Any) -> str | None:
    return value.get() if value is not None else None


def sign(
    dep: Deployment, url: str, headers: Mapping[str, str], body: bytes, now: datetime | None = None
) -> dict[str, str]:
    """The headers for a SigV4-signed POST of ``body`` to ``url``.

    Uses SigV4Auth's public steps rather than ``add_auth`` so the clock can be
    passed in and botocore's debug log never sees the canonical request (which
    holds the session token).
    """
    access_key, secret_key = _secret(dep.aws_access_key_id), _secret(dep.aws_secret_access_key)
    if not access_key or not secret_key or not dep.aws_region_name:
        raise ValueError(f"deployment '{dep.id}' needs aws_region_name, aws_access_key_id and aws_secret_access_key")
    SigV4Auth, AWSRequest, Credentials = _botocore_auth()
    token = _secret(dep.aws_session_token)
    auth = SigV4Auth(Credentials(access_key, secret_key, token), _SIGNING_NAME, dep.aws_region_name)
    request = AWSRequest(method="POST", url=url, headers=dict(headers), data=body)
    timestamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = timestamp
    request.headers["X-Amz-Date"] = timestamp
    if token:
        request.headers["X-Amz-Security-Token"] = token
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    signed = auth.signed_headers(auth.headers_to_sign(request))
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, SignedHeaders={signed}, Signature={signature}"
    )
    return dict(request.headers.items())


def _endpoint(dep: Deployment) -> str:
    base = dep.litellm_params.get("aws_bedrock_runtime_endpoint") or dep.api_base
    if not base:
        if not dep.aws_region_name:
            raise ValueError(f"deployment '{dep.id}' needs aws_region_name or an endpoint")
        base = f"https://bedrock-runtime.{dep.aws_region_name}.amazonaws.com"
    return base.rstrip("/")


def _model_url(dep: Deployment, operation: str) -> str:
    return f"{_endpoint(dep)}/model/{quote(dep.model, safe='')}/{operation}"


def _signed_request(dep: Deployment, operation: str, payload: Any, accept: str) -> UpstreamRequest:
    url = _model_url(dep, operation)
    body = orjson.dumps(payload)
    headers = sign(dep, url, {"Content-Type": _JSON, "Accept": accept}, body)
    return UpstreamRequest(method="POST", url=url, headers=headers, body=body)


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _failure(error_type: str, status: int, message: str, retry_after: float | None = None) -> UpstreamFailure:
    reason = ERROR_TYPES.get(error_type.lower())
    if reason is None:
        reason = reason_for_status(status) if status else FailureReason.SERVER_ERROR
    return UpstreamFailure(
        reason=reason,
        status=status,
        message=message,
        retry_after=retry_after,
        code=error_type or None,
    )


def _scrub(dep: Deployment, message: str) -> str:
    """An upstream message without credentials (InvalidSignatureException echoes
    the canonical request, session token included)."""
    message = message.split("\n\nThe Canonical String", 1)[0]
    for secret in (dep.aws_access_key_id, dep.aws_secret_access_key, dep.aws_session_token):
        value = _secret(secret)
        if value:
            message = message.replace(value, "***")
    return message[:_MAX_MESSAGE]


class BedrockAdapter:
    required_params = ("aws_region_name", "aws_access_key_id", "aws_secret_access_key")
    kind = KIND
    stream_content_type = "text/event-stream"

    def chat_request(self, dep: Deployment, body: dict[str, Any], stream: bool) -> UpstreamRequest:
        operation, accept = ("converse-stream", _EVENTSTREAM) if stream else ("converse", _JSON)
        return _signed_request(dep, operation, converse_body(body), accept)

    def chat_response(self, dep: Deployment, raw: bytes) -> tuple[bytes, Usage]:
        data = orjson.loads(raw)
        content = ((data.get("output") or {}).get("message") or {}).get("content") or []
        texts: list[str] = []
        reasoning: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for block in content:
            if "text" in block:
                texts.append(block["text"])
            elif "toolUse" in block:
                use = block["toolUse"]
                tool_calls.append(
                    {
                        "id": use.get("toolUseId"),
                        "type": "function",
                        "function": {"name": use.get("name"), "arguments": orjson.dumps(use.get("input", {})).decode()},
                    }
                )
            elif "reasoningContent" in block:  # redactedContent carries no text
                reasoning.append((block["reasoningContent"].get("reasoningText") or {}).get("text") or "")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
        if any(reasoning):
            message["reasoning_content"] = "".join(reasoning)
        if tool_calls:
            message["tool_calls"] = tool_calls
        usage = usage_from_bedrock(data.get("usage"))
        response = {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": dep.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": STOP_REASONS.get(data.get("stopReason"), "stop"),
                    "logprobs": None,
                }
            ],
            "usage": usage_to_openai(usage),
        }
        return orjson.dumps(response), usage

    def stream_decoder(self, dep: Deployment, include_usage: bool) -> BedrockStreamDecoder:
        return BedrockStreamDecoder(dep.model_name, include_usage)

    def embeddings_request(self, dep: Deployment, body: dict[str, Any]) -> UpstreamRequest:
        if not _TITAN_EMBED.match(dep.model):
            raise unsupported(f"embeddings with model '{dep.model}' (only amazon.titan-embed-*)")
        text = body.get("input")
        if isinstance(text, list) and all(isinstance(item, str) for item in text):
            if len(text) > 1:
                raise unsupported("more than one embedding input per request")
            text = text[0] if text else None
        if not isinstance(text, str):
            raise unsupported("embedding inputs other than a string (token ids)")
        payload: dict[str, Any] = {"inputText": text}
        if body.get("dimensions") is not None:
            payload["dimensions"] = body["dimensions"]
        return _signed_request(dep, "invoke", payload, _JSON)

    def embeddings_response(self, dep: Deployment, raw: bytes, encoding_format: str = "float") -> tuple[bytes, Usage]:
        data = orjson.loads(raw)
        vector = data.get("embedding") or []
        embedding: Any = vector
        if encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        tokens = int(data.get("inputTextTokenCount") or 0)
        response = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
            "model": dep.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return orjson.dumps(response), Usage(input_tokens=tokens)

    def error(self, dep: Deployment, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamFailure:
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        error_type = headers.get("x-amzn-errortype") or data.get("__type") or ""
        error_type = error_type.split(":", 1)[0].rsplit("#", 1)[-1]
        message = data.get("message") or data.get("Message")
        if not isinstance(message, str) or not message:
            text = "" if data else raw.decode("utf-8", "replace").strip()
            message = text or error_type or f"HTTP {status}"
        return _failure(error_type, status, _scrub(dep, message), parse_retry_after(headers))


class BedrockStreamDecoder:
    """ConverseStream event-stream frames -> OpenAI ``chat.completion.chunk`` events."""

    def __init__(self, model_name: str, include_usage: bool) -> None:
        buffer_cls, self._parser_error = _botocore_eventstream()
        self._buffer = buffer_cls()
        self._include_usage = include_usage
        self._id = _completion_id()
        self._created = int(time.time())
        self._model = model_name
        self._started = False
        self._stopped = False
        self._tool_index: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool_calls index
        self.usage: Usage | None = None
        self.done = False
        self.failure: UpstreamFailure | None = None
        self.text: list[str] = []

    def feed(self, data: bytes) -> list[bytes]:
        if self.failure is not None or self.done:
            return []
        self._buffer.add_data(data)
        events: list[bytes] = []
        try:
            for frame in self._buffer:
                events.extend(self._frame(frame.headers, frame.payload))
                if self.failure is not None or self.done:
                    break
        except self._parser_error as exc:
            self.failure = UpstreamFailure(FailureReason.PROTOCOL, 0, f"bad event-stream frame: {exc}")
        return events

    def close(self) -> list[bytes]:
        if self._stopped and self.failure is None:
            self.done = True  # messageStop arrived; metadata is optional
        return []

    def _frame(self, headers: Mapping[str, Any], payload: bytes) -> list[bytes]:
        message_type = headers.get(":message-type")
        if message_type == "exception":
            self.failure = _failure(headers.get(":exception-type") or "", 0, _payload_message(payload))
            return []
        if message_type != "event":
            code = str(headers.get(":error-code") or "")
            message = str(headers.get(":error-message") or _payload_message(payload))
            self.failure = _failure(code, 0, message[:_MAX_MESSAGE])
            return []
        try:
            event = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            self.failure = UpstreamFailure(FailureReason.PROTOCOL, 0, "event-stream payload is not JSON")
            return []
        handler = self._HANDLERS.get(headers.get(":event-type"))
        return handler(self, event) if handler is not None else []

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        if not self._started:
            self._started = True
            delta = {"role": "assistant", **delta}
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return sse_event(orjson.dumps(chunk))

    def _message_start(self, event: dict[str, Any]) -> list[bytes]:
        return [self._chunk({"content": ""})]

    def _block_start(self, event: dict[str, Any]) -> list[bytes]:
        use = (event.get("start") or {}).get("toolUse")
        if use is None:
            return []
        index = self._tool_index.setdefault(event.get("contentBlockIndex", -1), len(self._tool_index))
        call = {"index": index, "id": use.get("toolUseId"), "type": "function"}
        call["function"] = {"name": use.get("name"), "arguments": ""}
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, event: dict[str, Any]) -> list[bytes]:
        delta = event.get("delta") or {}
        if "text" in delta:
            self.text.append(delta["text"])
            return [self._chunk({"content": delta["text"]})]
        if "toolUse" in delta:
            index = self._tool_index.get(event.get("contentBlockIndex", -1))
            fragment = delta["toolUse"].get("input") or ""
            if index is None or not fragment:
                return []
            self.text.append(fragment)
            return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})]
        reasoning = (delta.get("reasoningContent") or {}).get("text")
        if reasoning:
            self.text.append(reasoning)
            return [self._chunk({"reasoning_content": reasoning})]
        return []

    def _message_stop(self, event: dict[str, Any]) -> list[bytes]:
        self._stopped = True
        return [self._chunk({}, STOP_REASONS.get(event.get("stopReason"), "stop"))]

    def _metadata(self, event: dict[str, Any]) -> list[bytes]:
        self.usage = usage_from_bedrock(event.get("usage"))
        self.done = True
        if not self._include_usage:
            return []
        chunk = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": usage_to_openai(self.usage),
        }
        return [sse_event(orjson.dumps(chunk))]

    _HANDLERS = {
        "messageStart": _message_start,
        "contentBlockStart": _block_start,
        "contentBlockDelta": _block_delta,
        "messageStop": _message_stop,
        "metadata": _metadata,
    }


def _payload_message(payload: bytes) -> str:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")[:_MAX_MESSAGE]
    message = (data.get("message") or data.get("Message")) if isinstance(data, dict) else None
    return str(message or "")[:_MAX_MESSAGE]
