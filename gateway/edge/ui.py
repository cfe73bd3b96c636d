"""``/ui``: a small cost page for teams without Grafana, served by the gateway itself.

The page (``gateway/edge/static/``: index.html, app.js, app.css) is static and holds no
data. It reads the gateway's own JSON API (``/v1/reports/tasks``, ``/v1/tasks``
and ``/ui/api/context`` below) with an admin key that the user types in; the key
stays in the tab's sessionStorage and goes out as ``Authorization: Bearer``.

When ``auth`` is configured::

    GET /ui  with an admin key                          200  the page
             with a key that is not an admin's          403  permission_error
             with a key that is not valid               401
             with no key, from a browser (Accept: html) 200  the page, which asks for a key
             with no key, from anything else            401
    GET /ui/app.js, /ui/app.css                         200  code only, never data
    GET /ui/api/context                                 admin only (401 / 403 as above)

A browser cannot put a Bearer key on a page load, so it gets the page and signs in
there; answering its page load with 401 would only leave an error in its console.
Without ``auth`` everything is open, as the rest of the API is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from gateway.config.identity import Tenant
from gateway.edge.auth import require_admin
from gateway.errors import NotFound
from gateway.ledger.ledger import Ledger
from gateway.snapshot import CurrentSnapshot

STATIC = Path(__file__).with_name("static")
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
HEADERS = {
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
}


def mount_ui(api: FastAPI, snapshots: CurrentSnapshot, ledger: Ledger,
             tenant_of: Callable[[Request], Awaitable[Tenant]]) -> None:
    """Adds ``/ui``, its two assets and ``/ui/api/context`` to the API app.

    The config is read on every request: a hot reload may turn auth on or off.
    """
    page = {auth: (STATIC / "index.html").read_text().replace("__AUTH__", auth).encode() for auth in ("on", "off")}
    assets = {name: (STATIC / name).read_bytes() for name in ASSETS}

    async def admin(request: Request) -> Tenant:
        return require_admin(await tenant_of(request), "the cost page")

    @api.get("/ui", include_in_schema=False)
    async def ui_page(request: Request) -> Response:
        auth_on = bool(snapshots.config.keys)
        browser = "text/html" in request.headers.get("accept", "")
        if not (auth_on and "authorization" not in request.headers and browser):
            await admin(request)  # 401 without or with a bad key, 403 for a non-admin key
        return Response(page["on" if auth_on else "off"], media_type="text/html; charset=utf-8", headers=HEADERS)

    @api.get("/ui/", include_in_schema=False)
    async def ui_slash() -> Response:
        return RedirectResponse("../ui", status_code=308)  # relative: works behind a path prefix too

    @api.get("/ui/{name}", include_in_schema=False)
    async def ui_asset(name: str) -> Response:
        if name not in assets:
            raise NotFound(f"no route GET /ui/{name}", code="unknown_route")
        return Response(assets[name], media_type=ASSETS[name], headers=HEADERS)

    @api.get("/ui/api/context", include_in_schema=False)
    async def ui_context(request: Request) -> dict[str, Any]:
        """Who is signed in and which tenants there are, for the page's tenant picker."""
        caller = await admin(request)
        names = {t.name for t in snapshots.config.keys.values()} | set(snapshots.config.budgets.tenants) | {caller.name}
        tenants = []
        for name in sorted(names):
            recent = await ledger.list(name, task_type=None, status=None, since=None, until=None,
                                          limit=1, before=None)
            tenants.append({"name": name, "has_tasks": bool(recent["data"])})
        return {"object": "ui.context", "tenant": caller.name, "auth": bool(snapshots.config.keys), "tenants": tenants,
                "task_types": {name: (float(t.price_usd) if t.price_usd is not None else None)
                               for name, t in snapshots.config.tasks.types.items()},
                "task_types_exact": {name: (format(t.price_usd, "f") if t.price_usd is not None else None)
                                     for name, t in snapshots.config.tasks.types.items()}}
