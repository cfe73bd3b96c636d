"""The non-hot endpoints, on FastAPI: health, readiness, models and metrics.

Every error leaves as OpenAI's error shape, including FastAPI's own 404/405
and validation errors.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.auth import authenticate
from gateway.config import Tenant
from gateway.errors import BadRequest, GatewayError, NotFound, error_body, error_headers

STARTED = int(time.time())


def _error_response(err: GatewayError) -> Response:
    headers = {k.decode(): v.decode() for k, v in error_headers(err) if k != b"content-type"}
    return Response(error_body(err), status_code=err.status, media_type="application/json", headers=headers)


def build_api(gw: Any) -> FastAPI:
    api = FastAPI(title="Taskgate", docs_url=None, redoc_url=None, openapi_url=None)

    @api.exception_handler(GatewayError)
    async def _gateway_error(request: Request, err: GatewayError) -> Response:
        return _error_response(err)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error_response(NotFound(f"no route {request.method} {request.url.path}", code="unknown_route"))
        err = GatewayError(str(exc.detail), code="http_error")
        err.status = exc.status_code
        err.type = "invalid_request_error"
        return _error_response(err)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return _error_response(BadRequest(first["msg"], param=param, code="invalid_request"))

    def tenant_of(request: Request) -> Tenant:
        return authenticate({k.lower(): v for k, v in request.headers.items()}, gw.config.keys)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> Response:
        if await gw.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "store": "unreachable"}, status_code=503)

    @api.get("/v1/models")
    @api.get("/models")
    async def models(request: Request) -> dict[str, Any]:
        tenant_of(request)
        data = [{"id": name, "object": "model", "created": STARTED, "owned_by": "taskgate"}
                for name in gw.config.public_models()]
        return {"object": "list", "data": data}

    @api.get("/metrics")
    async def metrics() -> Response:
        return Response(gw.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return api
