"""OpenAI, and the base for every OpenAI-compatible provider.

Subclasses (Azure, vLLM, llama.cpp) override only the URL, the auth headers
and the fields they reject. These upstreams speak the canonical request's own
shape, so the body goes out as the client sent it (less the gateway's fields),
and answers come back as canonical results that also carry the upstream's bytes
for the Chat Completions pass-through.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from providers.base import (
    ApiKey,
    Credentials,
    Deployment,
    FailureReason,
    Secret,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
    parse_retry_after,
    reason_for_status,
)
from providers.canonical import (
    ChatRequest,
    ChatResult,
    EmbeddingsRequest,
    EmbeddingsResult,
    RawChatResult,
)
from providers.openai_stream import OpenAIStreamDecoder
from providers.openai_wire import result_from_openai, usage_from_openai

# Fields that clients send for the gateway (or for OpenAI's stored completions)
# and that providers would reject. OpenAI itself 400s `metadata` without `store`.
CLIENT_ONLY_FIELDS = frozenset({"metadata", "litellm_session_id", "litellm_trace_id", "litellm_metadata"})


class OpenAIAdapter:
    kind = "openai"
    required_params: tuple[str, ...] = ()
    supported_params: frozenset[str] | None = None  # every parameter goes through
    passthrough = True
    default_base: str | None = "https://api.openai.com/v1"
    keeps_metadata_with_store = True  # OpenAI accepts `metadata` when `store` is true

    # --- what subclasses override -------------------------------------------

    def credentials(self, params: Mapping[str, Any]) -> Credentials:
        key = params.get("api_key")
        return ApiKey(Secret(str(key)) if key else None)

    def base_url(self, dep: Deployment) -> str:
        return (dep.api_base or self.default_base or "").rstrip("/")

    def url(self, dep: Deployment, operation: str) -> str:
        return f"{self.base_url(dep)}/{operation}"

    def auth_headers(self, dep: Deployment) -> dict[str, str]:
        key = api_key_of(dep)
        return {"Authorization": f"Bearer {key}"} if key else {}

    # --- requests -----------------------------------------------------------

    def forward_body(self, dep: Deployment, body: Mapping[str, Any]) -> dict[str, Any]:
        keep_metadata = self.keeps_metadata_with_store and body.get("store") is True
        out = {k: v for k, v in body.items() if k not in CLIENT_ONLY_FIELDS or (keep_metadata and k == "metadata")}
        out["model"] = dep.model
        return out

    def _request(self, dep: Deployment, operation: str, body: dict[str, Any]) -> UpstreamRequest:
        headers = {"Content-Type": "application/json", **self.auth_headers(dep)}
        return UpstreamRequest("POST", self.url(dep, operation), headers, orjson.dumps(body))

    def chat_request(self, dep: Deployment, req: ChatRequest) -> UpstreamRequest:
        out = self.forward_body(dep, req.body)
        if req.stream:
            # Always ask for usage: the gateway accounts every stream, and the
            # front strips the usage chunk again when the client did not ask for it.
            out["stream_options"] = {**(req.body.get("stream_options") or {}), "include_usage": True}
        return self._request(dep, "chat/completions", out)

    def embeddings_request(self, dep: Deployment, req: EmbeddingsRequest) -> UpstreamRequest:
        return self._request(dep, "embeddings", self.forward_body(dep, req.body))

    # --- responses ----------------------------------------------------------

    def chat_response(self, dep: Deployment, raw: bytes, passthrough: bool = False) -> ChatResult | RawChatResult:
        data = _object(raw)
        if passthrough:  # the hot path: the client gets these bytes; only the usage is read
            return RawChatResult(usage_from_openai(data.get("usage"), data.get("service_tier")) or Usage(), raw)
        return result_from_openai(data, raw)

    def embeddings_response(self, dep: Deployment, raw: bytes) -> EmbeddingsResult:
        # the upstream honoured encoding_format itself: its body goes to the client as it is
        return EmbeddingsResult(None, usage_from_openai(_object(raw).get("usage")) or Usage(), raw)

    def stream_decoder(self, dep: Deployment, passthrough: bool = False) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(passthrough)

    def error(self, dep: Deployment, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamFailure:
        return openai_failure(status, headers, raw)


def api_key_of(dep: Deployment) -> str | None:
    creds = dep.credentials
    return creds.key.get() if isinstance(creds, ApiKey) and creds.key is not None else None


def _object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("upstream answered with invalid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("upstream answered with a JSON value that is not an object")
    return data


def openai_failure(status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamFailure:
    """Read an OpenAI-shaped (or Azure-shaped) error body."""
    message, code = _error_fields(raw)
    reason = reason_for_status(status)
    if code == "content_filter":
        reason = FailureReason.CONTENT_FILTER
    return UpstreamFailure(reason, status, message, parse_retry_after(headers), code)


def _error_fields(raw: bytes) -> tuple[str, str | None]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw[:200].decode("utf-8", "replace").strip()
        return (text or "no error body"), None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        return str(err.get("message") or "no message"), (str(code) if code is not None else None)
    if isinstance(err, str):  # Ollama and some local servers
        return err, None
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"]), None
    return "no error message", None
