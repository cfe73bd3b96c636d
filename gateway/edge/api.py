"""The non-hot endpoints, on FastAPI: health, readiness, models, metrics and tasks.

Every error leaves as OpenAI's error shape, including FastAPI's own 404/405
and validation errors.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Mapping

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.accounting.metrics import Metrics
from gateway.config.identity import Tenant
from gateway.config.load import TENANT_NAME
from gateway.edge.limits import read_json, time_query
from gateway.edge.quotes import models_report, mount_quotes
from gateway.errors import (
    BadRequest,
    GatewayError,
    NotFound,
    PolicyDenied,
    error_body,
    error_headers,
    internal_error,
)
from gateway.ledger.ledger import OUTCOMES, Ledger
from gateway.proxy.tasks import TASK_ID
from gateway.keys import KeyBook
from gateway.snapshot import CurrentSnapshot

STARTED = int(time.time())


def _error_response(err: GatewayError) -> Response:
    headers = {k.decode(): v.decode() for k, v in error_headers(err) if k != b"content-type"}
    return Response(error_body(err), status_code=err.status, media_type="application/json", headers=headers)


Authenticator = Callable[[Mapping[str, str]], Awaitable[Tenant]]


def build_api(snapshots: CurrentSnapshot, ledger: Ledger, metrics: Metrics, authenticate: Authenticator,
              keys: KeyBook) -> FastAPI:
    """The API reads the config in force at each request from ``snapshots``; ``authenticate``
    turns a request's headers into its :class:`Tenant` (gateway/edge/auth.py)."""
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
        return _error_response(BadRequest(str(first["msg"]), param=param, code="invalid_request"))

    @api.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:  # never a plain-text 500
        return _error_response(internal_error())

    async def tenant_of(request: Request) -> Tenant:
        return await authenticate({k.lower(): v for k, v in request.headers.items()})

    # /healthz and /readyz are answered by the ASGI app itself (gateway/edge/asgi.py), before FastAPI loads.

    @api.get("/v1/models")
    @api.get("/models")
    async def models(request: Request) -> dict[str, Any]:
        caller = await tenant_of(request)
        data = [{"id": name, "object": "model", "created": STARTED, "owned_by": "taskgate"}
                for name in snapshots.config.public_models() if caller.models is None or name in caller.models]
        return {"object": "list", "data": data}

    @api.get("/v1/models/{model_id:path}")
    @api.get("/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        caller = await tenant_of(request)
        if model_id not in snapshots.config.public_models() or (caller.models is not None
                                                                 and model_id not in caller.models):
            raise NotFound(f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return {"id": model_id, "object": "model", "created": STARTED, "owned_by": "taskgate"}

    async def scope_tenant(request: Request, tenant: str | None) -> str:
        """The caller's tenant; an admin may name another with ``?tenant=``."""
        caller = await tenant_of(request)
        if tenant and tenant != caller.name:
            if not caller.admin or not TENANT_NAME.fullmatch(tenant):  # never a store key from a bad name
                raise NotFound("no such tenant", code="tenant_not_found")
            return tenant
        return caller.name

    def check_task_id(task_id: str) -> None:
        if not TASK_ID.fullmatch(task_id):
            raise BadRequest("a task id is 1 to 128 characters of A-Za-z0-9._:-", param="task_id",
                             code="invalid_task_id")

    @api.post("/v1/tasks/{task_id}/complete")
    async def complete_task(task_id: str, request: Request, tenant: str | None = None) -> dict[str, Any]:
        who = await scope_tenant(request, tenant)
        check_task_id(task_id)
        body = await read_json(request, snapshots.config.server.max_body_bytes)  # bounded; orjson: depth-limited
        outcome = body.get("outcome") if isinstance(body, dict) else None
        if outcome not in OUTCOMES:  # abandoned: the client gave up (the idle sweep says the same later)
            raise BadRequest("'outcome' must be 'succeeded', 'failed' or 'abandoned'", param="outcome",
                             code="invalid_outcome")
        return await ledger.complete(who, task_id, outcome)

    @api.get("/v1/tasks/{task_id}")
    async def get_task(task_id: str, request: Request, tenant: str | None = None,
                       include: str | None = None) -> dict[str, Any]:
        who = await scope_tenant(request, tenant)
        check_task_id(task_id)
        summary = await ledger.get(who, task_id)
        if include == "attempts":
            summary["attempt_records"] = await ledger.attempts(who, task_id)
        return summary

    @api.get("/v1/tasks")
    async def list_tasks(request: Request, tenant: str | None = None, task_type: str | None = None,
                         status: str | None = None, since: float | None = time_query(),
                         until: float | None = time_query(), limit: int = Query(default=20, ge=1, le=200),
                         before: float | None = time_query()) -> dict[str, Any]:
        who = await scope_tenant(request, tenant)
        if status not in (None, "open", "succeeded", "failed", "abandoned"):
            raise BadRequest("status must be open, succeeded, failed or abandoned", param="status",
                             code="invalid_status")
        return await ledger.list(who, task_type=task_type, status=status, since=since, until=until,
                                    limit=limit, before=before)

    @api.get("/v1/reports/tasks")
    async def report(request: Request, tenant: str | None = None, since: float | None = time_query(),
                     until: float | None = time_query(), by: str | None = None, window: str | None = None,
                     task_type: str | None = None) -> dict[str, Any]:
        who = await scope_tenant(request, tenant)
        if by not in (None, "task_type", "actor", "model"):
            raise BadRequest("'by' is task_type, actor or model", param="by", code="invalid_by")
        if by == "model":  # per task type x model path (gateway/edge/quotes.py)
            return await models_report(snapshots.config, ledger, who, window, since, until, task_type)
        now = time.time()
        until = now if until is None else until
        since = until - 7 * 86400 if since is None else since
        if since > until:
            raise BadRequest("'since' is after 'until'", param="since", code="invalid_period")
        if by == "actor":
            return await ledger.report_by_actor(who, since, until)
        return await ledger.report(who, since, until)

    mount_quotes(api, snapshots, ledger, scope_tenant)  # quotes, POST /v1/tasks, reports by model

    @api.get("/v1/audit")
    async def audit(request: Request, tenant: str | None = None, limit: int = Query(default=50, ge=1, le=500),
                    before: str | None = Query(default=None, pattern=r"^[0-9]{1,19}(-[0-9]{1,19})?$")
                    ) -> dict[str, Any]:
        """The policy audit log (denials, redactions, escalations): a tenant's own entries; an admin
        sees every tenant's, or one with ``?tenant=``."""
        caller = await tenant_of(request)
        return await ledger.read_audit(tenant if caller.admin else await scope_tenant(request, tenant), limit, before)

    @api.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        if snapshots.config.server.metrics_auth and not (await tenant_of(request)).admin:  # 401 without a valid key
            raise PolicyDenied("/metrics needs an admin key (server.metrics_auth)", code="admin_required")
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    document: dict[int, dict[str, Any]] = {}  # by config: the examples name the config's models

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> dict[str, Any]:
        """The whole API as OpenAPI 3.1 (gateway/edge/openapi.py); FastAPI's docs UI stays off."""
        config = snapshots.config
        if id(config) not in document:
            from gateway.edge.openapi import build_document

            document.clear()
            document[id(config)] = build_document(api.openapi(), config.public_models())
        return document[id(config)]

    from gateway.edge.ui import (
        mount_ui,  # /ui: the cost page for teams without Grafana (gateway/edge/ui.py)
    )
    mount_ui(api, snapshots, ledger, tenant_of)
    from gateway.edge.admin import mount_admin  # /v1/keys: virtual keys (admin keys only)

    mount_admin(api, keys, ledger, tenant_of)

    return api
