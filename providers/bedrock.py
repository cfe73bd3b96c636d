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

import functools
import re
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import quote

import orjson

from providers.base import (
    AwsSigV4,
    Credentials,
    Deployment,
    FailureReason,
    Secret,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
    token_count,
    parse_retry_after,
    reason_for_status,
)
from providers.bedrock_wire import (
    ERROR_TYPES,
    KIND,
    STOP_REASONS,
    SUPPORTED_PARAMS,
    converse_body,
    unsupported,
    usage_from_bedrock,
)
from providers.canonical import (
    ChatRequest,
    ChatResult,
    EmbeddingsRequest,
    EmbeddingsResult,
    Finish,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UsageReport,
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


def _secret(value: Secret | None) -> str | None:
    return value.get() if value is not None else None


def aws(dep: Deployment) -> AwsSigV4:
    creds = dep.credentials
    return creds if isinstance(creds, AwsSigV4) else AwsSigV4()


def sign(
    dep: Deployment, url: str, headers: Mapping[str, str], body: bytes, now: datetime | None = None
) -> dict[str, str]:
    """The headers for a SigV4-signed POST of ``body`` to ``url``.

    Uses SigV4Auth's public steps rather than ``add_auth`` so the clock can be
    passed in and botocore's debug log never sees the canonical request (which
    holds the session token).
    """
    creds = aws(dep)
    access_key, secret_key = _secret(creds.access_key_id), _secret(creds.secret_access_key)
    if not access_key or not secret_key or not creds.region:
        raise ValueError(f"deployment '{dep.id}' needs aws_region_name, aws_access_key_id and aws_secret_access_key")
    SigV4Auth, AWSRequest, BotoCredentials = _botocore_auth()
    token = _secret(creds.session_token)
    auth = SigV4Auth(BotoCredentials(access_key, secret_key, token), _SIGNING_NAME, creds.region)
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
        region = aws(dep).region
        if not region:
            raise ValueError(f"deployment '{dep.id}' needs aws_region_name or an endpoint")
        base = f"https://bedrock-runtime.{region}.amazonaws.com"
    return str(base).rstrip("/")


def _model_url(dep: Deployment, operation: str) -> str:
    return f"{_endpoint(dep)}/model/{quote(dep.model, safe='')}/{operation}"


def _signed_request(dep: Deployment, operation: str, payload: Mapping[str, Any], accept: str) -> UpstreamRequest:
    url = _model_url(dep, operation)
    body = orjson.dumps(payload)
    headers = sign(dep, url, {"Content-Type": _JSON, "Accept": accept}, body)
    return UpstreamRequest(method="POST", url=url, headers=headers, body=body)


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
    for secret in aws(dep).secrets():
        message = message.replace(secret.get(), "***")
    return message[:_MAX_MESSAGE]


class BedrockAdapter:
    kind = KIND
    required_params: tuple[str, ...] = ("aws_region_name", "aws_access_key_id", "aws_secret_access_key")
    supported_params: frozenset[str] | None = SUPPORTED_PARAMS
    passthrough = False

    def credentials(self, params: Mapping[str, Any]) -> Credentials:
        def secret(name: str) -> Secret | None:
            return Secret(str(params[name])) if params.get(name) else None

        return AwsSigV4(params.get("aws_region_name"), secret("aws_access_key_id"),
                        secret("aws_secret_access_key"), secret("aws_session_token"))

    def chat_request(self, dep: Deployment, req: ChatRequest) -> UpstreamRequest:
        operation, accept = ("converse-stream", _EVENTSTREAM) if req.stream else ("converse", _JSON)
        return _signed_request(dep, operation, converse_body(req.body), accept)

    def chat_response(self, dep: Deployment, raw: bytes, passthrough: bool = False) -> ChatResult:
        data = orjson.loads(raw)
        content = ((data.get("output") or {}).get("message") or {}).get("content") or []
        texts: list[str] = []
        reasoning: list[str] = []
        tool_calls: list[ToolCall] = []
        for block in content:
            if "text" in block:
                texts.append(block["text"])
            elif "toolUse" in block:
                use = block["toolUse"]
                tool_calls.append(ToolCall(str(use.get("toolUseId") or ""), str(use.get("name") or ""),
                                           orjson.dumps(use.get("input", {})).decode()))
            elif "reasoningContent" in block:  # redactedContent carries no text
                reasoning.append((block["reasoningContent"].get("reasoningText") or {}).get("text") or "")
        return ChatResult(
            text="".join(texts) if texts or not tool_calls else None,
            finish_reason=STOP_REASONS.get(str(data.get("stopReason")), "stop"),
            usage=usage_from_bedrock(data.get("usage")),
            tool_calls=tuple(tool_calls),
            reasoning="".join(reasoning) or None,
        )

    def stream_decoder(self, dep: Deployment, passthrough: bool = False) -> BedrockStreamDecoder:
        return BedrockStreamDecoder()

    def embeddings_request(self, dep: Deployment, req: EmbeddingsRequest) -> UpstreamRequest:
        body = req.body
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

    def embeddings_response(self, dep: Deployment, raw: bytes) -> EmbeddingsResult:
        data = orjson.loads(raw)
        return EmbeddingsResult((list(data.get("embedding") or []),),
                                Usage(input_tokens=token_count(data.get("inputTextTokenCount"))))

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
    """ConverseStream event-stream frames -> canonical stream events."""

    def __init__(self) -> None:
        buffer_cls, self._parser_error = _botocore_eventstream()
        self._buffer = buffer_cls()
        self._stopped = False
        self._failed = False
        self._tool_index: dict[int, int] = {}  # contentBlockIndex -> tool call index
        self.usage: Usage | None = None
        self.done = False
        self.text: list[str] = []

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self._failed or self.done:
            return []
        self._buffer.add_data(data)
        events: list[StreamEvent] = []
        try:
            for frame in self._buffer:
                events.extend(self._frame(frame.headers, frame.payload))
                if self._ended():
                    break
        except self._parser_error as exc:
            events.append(self._fail(UpstreamFailure(FailureReason.PROTOCOL, 0, f"bad event-stream frame: {exc}")))
        return events

    def close(self) -> list[StreamEvent]:
        if self._stopped and not self._failed:
            self.done = True  # messageStop arrived; metadata is optional
        return []

    def _ended(self) -> bool:
        return self._failed or self.done

    def _fail(self, failure: UpstreamFailure) -> StreamError:
        self._failed = True
        return StreamError(failure)

    def _frame(self, headers: Mapping[str, Any], payload: bytes) -> list[StreamEvent]:
        message_type = headers.get(":message-type")
        if message_type == "exception":
            return [self._fail(_failure(headers.get(":exception-type") or "", 0, _payload_message(payload)))]
        if message_type != "event":
            code = str(headers.get(":error-code") or "")
            message = str(headers.get(":error-message") or _payload_message(payload))
            return [self._fail(_failure(code, 0, message[:_MAX_MESSAGE]))]
        try:
            event = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            return [self._fail(UpstreamFailure(FailureReason.PROTOCOL, 0, "event-stream payload is not JSON"))]
        handler = self._HANDLERS.get(str(headers.get(":event-type")))
        return handler(self, event) if handler is not None else []

    def _block_start(self, event: dict[str, Any]) -> list[StreamEvent]:
        use = (event.get("start") or {}).get("toolUse")
        if use is None:
            return []
        index = self._tool_index.setdefault(event.get("contentBlockIndex", -1), len(self._tool_index))
        return [ToolCallDelta(index, "", use.get("toolUseId"), use.get("name"))]

    def _block_delta(self, event: dict[str, Any]) -> list[StreamEvent]:
        delta = event.get("delta") or {}
        if "text" in delta:
            self.text.append(delta["text"])
            return [TextDelta(delta["text"])]
        if "toolUse" in delta:
            index = self._tool_index.get(event.get("contentBlockIndex", -1))
            fragment = delta["toolUse"].get("input") or ""
            if index is None or not fragment:
                return []
            self.text.append(fragment)
            return [ToolCallDelta(index, fragment)]
        reasoning = (delta.get("reasoningContent") or {}).get("text")
        if reasoning:
            self.text.append(reasoning)
            return [ReasoningDelta(reasoning)]
        return []

    def _message_stop(self, event: dict[str, Any]) -> list[StreamEvent]:
        self._stopped = True
        return [Finish(STOP_REASONS.get(str(event.get("stopReason")), "stop"))]

    def _metadata(self, event: dict[str, Any]) -> list[StreamEvent]:
        self.usage = usage_from_bedrock(event.get("usage"))
        self.done = True
        return [UsageReport(self.usage)]

    _HANDLERS = {
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
