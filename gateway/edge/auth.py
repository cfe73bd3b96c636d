"""Who is calling: API key -> tenant (pure)."""

from __future__ import annotations

import hmac
from typing import Mapping

from gateway.config.identity import Tenant
from gateway.errors import Unauthorized

ANONYMOUS = Tenant("default", admin=True)  # when no auth is configured


def authenticate(headers: Mapping[str, str], keys: Mapping[str, Tenant]) -> Tenant:
    if not keys:
        return ANONYMOUS
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if not value and headers.get("x-api-key"):  # Anthropic's clients send the key this way
        scheme, token = "bearer", headers["x-api-key"].strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
    for key, tenant in keys.items():  # constant-time compare against each configured key
        if hmac.compare_digest(key.encode(), token.encode()):
            return tenant
    raise Unauthorized("invalid API key")
