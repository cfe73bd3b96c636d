"""Anthropic Messages wire shapes the front writes (pure helpers): usage, stop reasons, errors."""

from __future__ import annotations

import math
from typing import Any

import orjson

from gateway.errors import GatewayError
from providers.base import Usage
from providers.canonical import FinishReason

STOP_REASONS: dict[FinishReason, str] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                                         "content_filter": "refusal"}

# the gateway's status -> Anthropic's (status, error type)
_ERRORS: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"), 401: (401, "authentication_error"), 403: (403, "permission_error"),
    404: (404, "not_found_error"), 409: (409, "invalid_request_error"), 413: (413, "request_too_large"),
    431: (431, "invalid_request_error"),
    429: (429, "rate_limit_error"), 500: (500, "api_error"), 502: (500, "api_error"),
    503: (529, "overloaded_error"), 504: (504, "api_error"),
}


def usage_object(u: Usage | None) -> dict[str, Any]:
    """Usage in Anthropic's semantics: ``input_tokens`` excludes cache reads and writes."""
    u = u or Usage()
    return {"input_tokens": max(0, u.input_tokens - u.cached_input_tokens - u.cache_write_tokens),
            "cache_creation_input_tokens": u.cache_write_tokens, "cache_read_input_tokens": u.cached_input_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write_tokens - u.cache_write_1h_tokens,
                               "ephemeral_1h_input_tokens": u.cache_write_1h_tokens},
            "output_tokens": u.output_tokens}


def error_status_type(err: GatewayError) -> tuple[int, str]:
    return _ERRORS.get(err.status, (500, "api_error"))


def error_payload(err: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_status_type(err)[1], "message": err.message}}


def error_response(err: GatewayError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"content-type", b"application/json")]
    if err.retry_after is not None:
        headers.append((b"retry-after", str(max(0, math.ceil(err.retry_after))).encode()))
    return error_status_type(err)[0], [*headers, *err.headers], orjson.dumps(error_payload(err))
