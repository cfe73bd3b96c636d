"""Google's Gemini API: ``gemini`` (Google AI Studio, an API key) and ``vertex_ai`` (Vertex AI,
a service account). Pure translation, no network I/O.

Both speak ``generateContent`` and ``streamGenerateContent?alt=sse`` with the same
body (``providers/gemini_wire.py``). Vertex AI is authorised with an OAuth access
token from a service account key: google-auth makes it (imported lazily, on the
first Vertex request) as a self-signed JWT with the cloud-platform scope, signed
locally with the key, so no token endpoint is called on the request path.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Mapping
from urllib.parse import quote

import orjson

from providers.base import (
    ApiKey,
    Credentials,
    Deployment,
    FailureReason,
    GoogleServiceAccount,
    Secret,
    Unsupported,
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
    Finish,
    ReasoningDelta,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageReport,
)
from providers.gemini_wire import (
    STATUS_REASONS,
    SUPPORTED_PARAMS,
    candidate_parts,
    finish_of,
    gemini_body,
    result_from_gemini,
    usage_from_gemini,
)

AI_STUDIO = "https://generativelanguage.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_MAX_MESSAGE = 500


class _GeminiBase:
    kind = "gemini"
    required_params: tuple[str, ...] = ()
    supported_params: frozenset[str] | None = SUPPORTED_PARAMS
    passthrough = False

    def credentials(self, params: Mapping[str, Any]) -> Credentials:
        key = params.get("api_key")
        return ApiKey(Secret(str(key)) if key else None)

    def url(self, dep: Deployment, stream: bool) -> str:
        raise NotImplementedError

    def auth_headers(self, dep: Deployment) -> dict[str, str]:
        raise NotImplementedError

    def chat_request(self, dep: Deployment, req: ChatRequest) -> UpstreamRequest:
        headers = {"Content-Type": "application/json", **self.auth_headers(dep)}
        return UpstreamRequest("POST", self.url(dep, req.stream), headers,
                               orjson.dumps(gemini_body(self.kind, req.body)))

    def chat_response(self, dep: Deployment, raw: bytes, passthrough: bool = False) -> ChatResult:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("upstream answered with a JSON value that is not an object")
        return result_from_gemini(data)

    def stream_decoder(self, dep: Deployment, passthrough: bool = False) -> "GeminiStreamDecoder":
        return GeminiStreamDecoder()

    def embeddings_request(self, dep: Deployment, req: EmbeddingsRequest) -> UpstreamRequest:
        raise Unsupported(self.kind, "embeddings")

    def embeddings_response(self, dep: Deployment, raw: bytes) -> EmbeddingsResult:
        raise Unsupported(self.kind, "embeddings")

    def error(self, dep: Deployment, status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamFailure:
        return google_failure(status, headers, raw)


class GeminiAdapter(_GeminiBase):
    """Google AI Studio: ``x-goog-api-key``."""

    kind = "gemini"
    required_params: tuple[str, ...] = ("api_key",)

    def url(self, dep: Deployment, stream: bool) -> str:
        base = (dep.api_base or AI_STUDIO).rstrip("/")
        op = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{base}/v1beta/models/{quote(dep.model, safe='.-_')}:{op}"

    def auth_headers(self, dep: Deployment) -> dict[str, str]:
        creds = dep.credentials
        key = creds.key.get() if isinstance(creds, ApiKey) and creds.key is not None else ""
        return {"x-goog-api-key": key}


class VertexAdapter(_GeminiBase):
    """Vertex AI: a service account's access token, per project and location."""

    kind = "vertex_ai"
    required_params: tuple[str, ...] = ("vertex_project", "vertex_credentials")

    def credentials(self, params: Mapping[str, Any]) -> Credentials:
        info = params.get("vertex_credentials")
        return GoogleServiceAccount(Secret(str(info)) if info else None, params.get("vertex_project"),
                                    str(params.get("vertex_location") or "us-central1"))

    def url(self, dep: Deployment, stream: bool) -> str:
        creds = _account(dep)
        if not dep.model.startswith("gemini"):
            raise Unsupported(self.kind, f"the model '{dep.model}' (only Gemini models on Vertex AI)")
        location = creds.location
        host = dep.api_base or ("https://aiplatform.googleapis.com" if location == "global"
                                else f"https://{location}-aiplatform.googleapis.com")
        op = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return (f"{host.rstrip('/')}/v1/projects/{quote(str(creds.project), safe='')}/locations/"
                f"{quote(location, safe='')}/publishers/google/models/{quote(dep.model, safe='.-_')}:{op}")

    def auth_headers(self, dep: Deployment) -> dict[str, str]:
        return {"Authorization": f"Bearer {access_token(_account(dep))}"}


def _account(dep: Deployment) -> GoogleServiceAccount:
    creds = dep.credentials
    if not isinstance(creds, GoogleServiceAccount) or creds.info is None or not creds.project:
        raise ValueError(f"deployment '{dep.id}' needs vertex_project and vertex_credentials")
    return creds


_tokens: dict[str, Any] = {}  # sha256 of the key's JSON -> google-auth credentials (refreshed locally)
_tokens_lock = threading.Lock()


class _NoNetwork:
    """google-auth's request callable; a self-signed JWT never calls it."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("google-auth tried to reach the network for a self-signed token")


def access_token(account: GoogleServiceAccount) -> str:
    """A cloud-platform access token for the service account: a JWT signed with its key (google-auth)."""
    assert account.info is not None
    raw = account.info.get()
    ident = hashlib.sha256(raw.encode()).hexdigest()
    with _tokens_lock:
        creds = _tokens.get(ident)
        if creds is None:
            from google.oauth2 import service_account

            try:
                info = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise ValueError("vertex_credentials is not a service account key (JSON)") from None
            creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[SCOPE], always_use_jwt_access=True)
            if len(_tokens) > 64:
                _tokens.clear()
            _tokens[ident] = creds
        if not creds.valid:
            creds.refresh(_NoNetwork())
        return str(creds.token)


def google_failure(status: int, headers: Mapping[str, str], raw: bytes) -> UpstreamFailure:
    """A google.rpc error body (``{"error": {code, message, status}}``, or a list of one)."""
    try:
        data: Any = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        data = {}
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    err = err if isinstance(err, dict) else {}
    code = str(err.get("status") or "")
    message = str(err.get("message") or raw[:200].decode("utf-8", "replace").strip() or f"HTTP {status}")
    details = [d.get("reason") for d in err.get("details") or [] if isinstance(d, dict)]
    reason = STATUS_REASONS.get(code) or reason_for_status(status)
    if "API_KEY_INVALID" in details:  # Google answers a bad key with 400 INVALID_ARGUMENT
        reason, code = FailureReason.AUTH, "API_KEY_INVALID"
    return UpstreamFailure(reason, status, message[:_MAX_MESSAGE], parse_retry_after(headers), code or None)


class GeminiStreamDecoder:
    """``streamGenerateContent?alt=sse``: each SSE event is a whole GenerateContentResponse."""

    def __init__(self) -> None:
        self._buffer = b""
        self._calls = 0
        self._finished = False
        self._failed = False
        self.usage: Usage | None = None
        self.done = False
        self.text: list[str] = []

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self._failed:
            return []
        self._buffer += data.replace(b"\r\n", b"\n")
        events: list[StreamEvent] = []
        while b"\n\n" in self._buffer and not self._failed:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            payload = b"".join(line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:"))
            if payload:
                events += self._event(payload)
        return events

    def close(self) -> list[StreamEvent]:
        if self._finished and not self._failed:
            self.done = True
        return []

    def _event(self, payload: bytes) -> list[StreamEvent]:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._failed = True
            return [StreamError(UpstreamFailure(FailureReason.PROTOCOL, 0, "stream event is not JSON"))]
        if not isinstance(data, dict):
            return []
        if isinstance(data.get("error"), dict):
            self._failed = True
            return [StreamError(google_failure(int(data["error"].get("code") or 0), {}, payload))]
        out: list[StreamEvent] = []
        parts, reason = candidate_parts(data)
        for part in parts:
            if "functionCall" in part:
                call = part["functionCall"]
                arguments = orjson.dumps(call.get("args") or {}).decode()
                self.text.append(arguments)
                out.append(ToolCallDelta(self._calls, arguments, f"call_{self._calls}", str(call.get("name") or "")))
                self._calls += 1
            elif part.get("text"):
                self.text.append(str(part["text"]))
                out.append(ReasoningDelta(str(part["text"])) if part.get("thought") else TextDelta(str(part["text"])))
        if data.get("usageMetadata"):
            self.usage = usage_from_gemini(data["usageMetadata"])
        blocked = not data.get("candidates") and bool((data.get("promptFeedback") or {}).get("blockReason"))
        if (reason or blocked) and not self._finished:
            self._finished = True
            out.append(Finish(finish_of(reason, self._calls > 0, blocked)))
            if self.usage is not None:
                out.append(UsageReport(self.usage))
        return out
