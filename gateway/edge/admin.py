"""``/v1/keys``: the admin API of virtual keys (admin keys only; a tenant key gets 403).

    POST /v1/keys                  create (a person's key, or an agent's with agent_of + name);
                                   the answer holds the key, shown this once and never again
    GET  /v1/keys[?tenant=T]       list: ids, tenant, name, scope, dates, spend; never a key
    GET  /v1/keys/{id}             one key's record
    POST /v1/keys/{id}/revoke      revoke it (and, for a person's key, its agents' keys)
    POST /v1/keys/{id}/rotate      a new key for the same id and scope; the old one stops working

Every field is validated (:func:`gateway.keys.records.parse_request`): 400 in OpenAI's shape.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request

from gateway.accounting.pricing import format_usd
from gateway.config.identity import Tenant
from gateway.edge.http import parse_json_object
from gateway.edge.limits import read_raw
from gateway.edge.auth import require_admin
from gateway.errors import BadRequest
from gateway.keys import KeyBook, KeyRecord
from gateway.config.load import TENANT_NAME
from gateway.keys.records import parse_request
from gateway.ledger.ledger import Ledger

MAX_BODY = 64 * 1024


def mount_admin(api: FastAPI, keys: KeyBook, ledger: Ledger,
                tenant_of: Callable[[Request], Awaitable[Tenant]]) -> None:
    async def admin(request: Request) -> Tenant:
        return require_admin(await tenant_of(request), "managing keys")

    async def shown(rec: KeyRecord) -> dict[str, Any]:
        out = rec.public()
        spent = await ledger.key_spent(rec.tenant, rec.id)
        out["spend_usd"] = format_usd(spent)
        out["spend_picousd"] = spent
        return out

    @api.post("/v1/keys")
    async def create_key(request: Request) -> dict[str, Any]:
        await admin(request)
        raw = await read_raw(request, MAX_BODY)
        fields = parse_request(parse_json_object(raw), time.time())
        token, rec = await keys.create(fields)
        return {**await shown(rec), "key": token}

    @api.get("/v1/keys")
    async def list_keys(request: Request, tenant: str | None = None) -> dict[str, Any]:
        await admin(request)
        if tenant is not None and not TENANT_NAME.fullmatch(tenant):
            raise BadRequest("'tenant' must be 1 to 64 characters of A-Za-z0-9_.-", param="tenant",
                             code="invalid_tenant")
        return {"object": "list", "data": [await shown(r) for r in await keys.list_keys(tenant)]}

    @api.get("/v1/keys/{key_id}")
    async def get_key(key_id: str, request: Request) -> dict[str, Any]:
        await admin(request)
        return await shown(await keys.get(key_id))

    @api.post("/v1/keys/{key_id}/revoke")
    async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
        await admin(request)
        changed = await keys.revoke(key_id)
        return {**await shown(await keys.get(key_id)), "revoked_keys": [r.id for r in changed]}

    @api.post("/v1/keys/{key_id}/rotate")
    async def rotate_key(key_id: str, request: Request) -> dict[str, Any]:
        await admin(request)
        token, rec = await keys.rotate(key_id)
        return {**await shown(rec), "key": token}
