"""Who is calling: API key -> tenant.

A key from the config is found in an in-memory map of HMAC digests (one hash, one
dict lookup); any other key is looked up in the store by its digest
(:class:`~gateway.keys.KeyBook`, one read). Neither costs more with more keys, and a
token longer than :data:`MAX_KEY_BYTES` is refused before it is hashed.
"""

from __future__ import annotations

from typing import Mapping

from gateway.config.identity import MAX_KEY_BYTES, Tenant
from gateway.config.load import Config
from gateway.errors import PolicyDenied, Unauthorized
from gateway.keys import KeyBook

ANONYMOUS = Tenant("default", admin=True)  # when no auth is configured


def bearer(headers: Mapping[str, str]) -> str:
    """The key the request carries (``Authorization: Bearer`` or Anthropic's ``x-api-key``), or 401."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if not value and headers.get("x-api-key"):  # Anthropic's clients send the key this way
        scheme, token = "bearer", headers["x-api-key"].strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
    return token


async def authenticate(headers: Mapping[str, str], config: Config, book: KeyBook | None) -> Tenant:
    if not config.keys:
        return ANONYMOUS
    token = bearer(headers)
    if len(token) > MAX_KEY_BYTES:
        raise Unauthorized("invalid API key")
    tenant = config.key_tenant(token)
    if tenant is None and book is not None:
        tenant = await book.authenticate(token)
    if tenant is None:
        raise Unauthorized("invalid API key")
    return tenant


def require_admin(caller: Tenant, what: str) -> Tenant:
    """``caller``, if its key is an admin key; else 403 ``admin_required`` naming ``what`` needs one."""
    if not caller.admin:
        raise PolicyDenied(f"{what} needs an admin key; the key of tenant '{caller.name}' is not one",
                           code="admin_required")
    return caller
