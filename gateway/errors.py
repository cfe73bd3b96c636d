"""Taskgate's errors, and the one place that turns them into HTTP responses.

    GatewayError                    status  type
    ├── BadRequest                  400     invalid_request_error
    ├── Unauthorized                401     authentication_error
    ├── PolicyDenied                403     permission_error
    ├── NotFound                    404     not_found_error
    ├── Conflict                    409     conflict_error
    ├── PayloadTooLarge             413     invalid_request_error
    ├── HeadersTooLarge             431     invalid_request_error
    ├── RateLimited                 429     rate_limit_error   (retry-after)
    ├── UpstreamError               502     upstream_error
    ├── ServiceUnavailable          503     service_unavailable
    └── UpstreamTimeout             504     timeout_error

Code raises these; only :func:`error_body` and :func:`error_headers` know the
wire shape, which is OpenAI's: ``{"error": {"message", "type", "param", "code"}}``.
An upstream failure is mapped by :func:`from_upstream`, one table for every
provider (adapters normalise their provider's wording into a FailureReason).
"""

from __future__ import annotations

import math
from dataclasses import replace

import orjson

from providers.base import UPSTREAM_TOO_LARGE, Deployment, FailureReason, UpstreamFailure
from providers.redact import scrub


class GatewayError(Exception):
    status = 500
    type = "internal_error"
    default_code: str | None = None
    task_id: str | None = None  # set once the request's task is known, so that the error response names it
    headers: tuple[tuple[bytes, bytes], ...] = ()  # more response headers (a 429's x-ratelimit-*)

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.param = param
        self.retry_after = retry_after


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PolicyDenied(GatewayError):
    status = 403
    type = "permission_error"
    default_code = "policy_denied"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    default_code = "not_found"


class Conflict(GatewayError):
    status = 409
    type = "conflict_error"
    default_code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class HeadersTooLarge(GatewayError):
    status = 431
    type = "invalid_request_error"
    default_code = "request_header_fields_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    default_code = "upstream_error"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    default_code = "service_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "timeout_error"
    default_code = "upstream_timeout"


# FailureReason -> (error class, code). Upstream auth and "not found" are the
# gateway's misconfiguration, not the client's fault, so they become 502.
_UPSTREAM_TABLE: dict[FailureReason, tuple[type[GatewayError], str]] = {
    FailureReason.BAD_REQUEST: (BadRequest, "upstream_bad_request"),
    FailureReason.CONTENT_FILTER: (BadRequest, "content_filter"),
    FailureReason.AUTH: (UpstreamError, "upstream_auth_failed"),
    FailureReason.NOT_FOUND: (UpstreamError, "upstream_model_not_found"),
    FailureReason.RATE_LIMITED: (RateLimited, "rate_limit_exceeded"),
    FailureReason.TIMEOUT: (UpstreamTimeout, "upstream_timeout"),
    FailureReason.SERVER_ERROR: (UpstreamError, "upstream_error"),
    FailureReason.UNAVAILABLE: (UpstreamError, "upstream_unavailable"),
    FailureReason.PROTOCOL: (UpstreamError, "upstream_protocol_error"),
}


def from_upstream(dep: Deployment, failure: UpstreamFailure) -> GatewayError:
    """The client-facing error for an upstream failure, naming the deployment."""
    cls, code = _UPSTREAM_TABLE[failure.reason]
    if failure.code == UPSTREAM_TOO_LARGE:
        code = UPSTREAM_TOO_LARGE
    where = f"deployment '{dep.id}' ({dep.kind})"
    status = f" {failure.status}" if failure.status else ""
    message = f"{where} failed{status}: {redact(dep, failure.message)}"
    return cls(message, code=code, retry_after=failure.retry_after)


def redact(dep: Deployment, text: str) -> str:
    """Upstream messages may echo our credentials or a fragment of them ("Incorrect API key
    provided: sk-...abcd"), and URLs may carry userinfo: none of it leaves (providers/redact.py)."""
    return scrub(text, [s.get() for s in dep.credentials.secrets()])


def redacted_failure(dep: Deployment, failure: UpstreamFailure) -> UpstreamFailure:
    """The failure with its message scrubbed: what logs, the ledger and the client see."""
    message = redact(dep, failure.message)
    return failure if message == failure.message else replace(failure, message=message)


def error_body(err: GatewayError) -> bytes:
    return orjson.dumps(
        {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    )


def error_headers(err: GatewayError) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json")]
    if err.retry_after is not None:
        headers.append((b"retry-after", str(max(0, math.ceil(err.retry_after))).encode()))
    return [*headers, *err.headers]


def internal_error() -> GatewayError:
    """What a client sees for a bug: no traceback, no detail, still OpenAI-shaped."""
    err = GatewayError("internal error in the gateway; see the gateway log", code="internal_error")
    err.status = 500
    return err
