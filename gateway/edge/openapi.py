"""``GET /openapi.json``: one OpenAPI 3.1 document for the whole API.

FastAPI describes the endpoints it serves (``app.openapi()``: models, tasks, reports,
audit, metrics, and whatever is added to it later); :mod:`gateway.edge.openapi_schemas`
describes the hot path that the ASGI app serves itself. Every operation's 4xx and 5xx
responses are the documented error shape (OpenAI's, or Anthropic's on /v1/messages*),
which is what the gateway sends: FastAPI's 422 is a 400 here (gateway/edge/api.py).
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

from gateway import __version__
from gateway.edge.openapi_schemas import (
    ANTHROPIC_PATHS,
    HEADER_PARAMS,
    HOT_PATHS,
    JSON,
    METRICS,
    SCHEMAS,
    SECURITY,
    SECURITY_SCHEMES,
    ref,
)

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
DESCRIPTION = ("Taskgate: an OpenAI-compatible LLM gateway that prices AI work per completed task. "
               "Errors use OpenAI's shape, {\"error\": {...}}, except /v1/messages*, which use Anthropic's.")


def _error(schema: str, what: str) -> dict[str, Any]:
    return {"description": what, "content": {JSON: {"schema": ref(schema)}}}


def _with_errors(path: str, op: dict[str, Any]) -> None:
    """Every 4xx and 5xx of ``op`` in the error shape of its path (FastAPI's 422 becomes our 400)."""
    if path in ("/healthz", "/readyz"):  # answered before anything else: 200, or 503 with a Health body
        return
    shape = "AnthropicError" if path in ANTHROPIC_PATHS else "OpenAIError"
    responses = op.setdefault("responses", {})
    responses.pop("422", None)
    for code in list(responses):
        if code[0] in "45":
            responses[code] = _error(shape, responses[code].get("description", "error"))
    responses.setdefault("4XX", _error(shape, "A client error (400 bad request, 401 no or bad key, 403 policy, "
                                              "404 not found, 409 conflict, 413 too large, 429 rate or budget)"))
    responses.setdefault("5XX", _error(shape, "An upstream or gateway failure (502, 503, 504)"))


def build_document(fastapi_doc: dict[str, Any], public_models: Iterable[str] = ()) -> dict[str, Any]:
    """The whole API: FastAPI's document with the hot path, error shapes and headers merged in."""
    doc = copy.deepcopy(fastapi_doc)
    doc["openapi"] = "3.1.0"
    doc["info"] = {"title": "Taskgate", "version": __version__, "description": DESCRIPTION}
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422: never sent (a 400 instead)
        schemas.pop(name, None)
    schemas.update(copy.deepcopy(SCHEMAS))
    components.setdefault("parameters", {}).update(copy.deepcopy(HEADER_PARAMS))
    components["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
    doc["security"] = copy.deepcopy(SECURITY)
    models = sorted(public_models)
    paths = doc.setdefault("paths", {})
    for path, item in copy.deepcopy(HOT_PATHS).items():
        paths.setdefault(path, {}).update(item)
    if "/metrics" in paths and "get" in paths["/metrics"]:
        paths["/metrics"]["get"]["responses"] = {"200": copy.deepcopy(METRICS)}
    for path, item in paths.items():
        for method in METHODS:
            if method in item:
                _with_errors(path, item[method])
    if models:  # the examples a reader (and a fuzzer) starts from: this gateway's own models
        for name in ("ChatCompletionRequest", "EmbeddingsRequest", "ResponsesRequest", "MessagesRequest",
                     "CountTokensRequest"):
            schemas[name]["properties"]["model"]["examples"] = models
    return doc


__all__ = ["build_document"]
