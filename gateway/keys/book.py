"""Virtual keys in the store, kept only as a keyed hash.

    tg:{keys}:secret            string: the HMAC secret, made once (SET NX) when auth.secret is unset
    tg:{keys}:h:<hmac hex>      string: the key's record (JSON), looked up by HMAC-SHA256(secret, key)
    tg:{keys}:id:<key id>       string: the same record by id (list, revoke, rotate)
    tg:{keys}:all               zset: key ids by creation time
    tg:{keys}:agents:<key id>   set: the agent keys of a person's key

All of them share the hash tag ``{keys}``, so each multi-key transaction touches
one Redis Cluster slot. Authenticating reads one key (two for an agent key: its
person's record too), whatever the number of keys; the digest comparison is
``hmac.compare_digest``.

**Cache and revocation bound.** A record looked up is kept in this process for
:data:`CACHE_S` (1 s); a lookup that found nothing is not cached. So a revoked or
rotated key stops working here at once and on other replicas within 1 s.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import replace
from typing import Any

import orjson

from gateway.config.identity import MAX_KEY_BYTES, Tenant, key_digest
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.keys.records import KEY_ID, KeyRecord, check_agent_scope, tenant_of
from gateway.store.client import Store

CACHE_S = 1.0
CACHE_MAX = 10_000
PREFIX = "tg:{keys}:"
SECRET_KEY = PREFIX + "secret"
ALL = PREFIX + "all"
TOKEN_PREFIX = "tg-"


def _h(digest: str) -> str:
    return f"{PREFIX}h:{digest}"


def _id(key_id: str) -> str:
    return f"{PREFIX}id:{key_id}"


def _agents(key_id: str) -> str:
    return f"{PREFIX}agents:{key_id}"


class KeyBook:
    def __init__(self, store: Store, configured_secret: bytes | None) -> None:
        self.store = store
        self._secret = configured_secret
        self._cache: dict[str, tuple[float, KeyRecord]] = {}

    async def secret(self) -> bytes:
        """``auth.secret``, else the store's (made once by whichever replica comes first)."""
        if self._secret is None:
            await self.store.set(SECRET_KEY, secrets.token_hex(32), nx=True)
            value: Any = await self.store.get(SECRET_KEY)
            if not value:
                raise RuntimeError("the store holds no key secret")
            self._secret = bytes(value)
        return self._secret

    async def digest(self, token: str) -> str:
        return key_digest(await self.secret(), token).hex()

    # --- authenticating --------------------------------------------------------------

    async def authenticate(self, token: str, now: float | None = None) -> Tenant | None:
        """The identity of a virtual key, or None (unknown, revoked, expired, or its person's key is)."""
        if len(token) > MAX_KEY_BYTES or not token.startswith(TOKEN_PREFIX):
            return None
        now = time.time() if now is None else now
        digest = await self.digest(token)
        rec = await self._cached(digest, _h(digest))
        if rec is None or not hmac.compare_digest(rec.digest, digest) or not rec.usable(now):
            return None
        person = None
        if rec.agent_of is not None:
            person = await self._cached("id:" + rec.agent_of, _id(rec.agent_of))
            if person is None or not person.usable(now):
                return None
        return tenant_of(rec, person)

    async def _cached(self, slot: str, store_key: str) -> KeyRecord | None:
        mono = time.monotonic()
        hit = self._cache.get(slot)
        if hit is not None and hit[0] > mono:
            return hit[1]
        raw: Any = await self.store.get(store_key)
        if raw is None:
            self._cache.pop(slot, None)
            return None
        rec = KeyRecord.from_json(orjson.loads(raw))
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[slot] = (mono + CACHE_S, rec)
        return rec

    # --- managing (the admin API) -------------------------------------------------------

    async def get(self, key_id: str) -> KeyRecord:
        raw: Any = await self.store.get(_id(key_id)) if KEY_ID.fullmatch(key_id) else None
        if raw is None:
            raise NotFound(f"no key '{key_id}'", param="key_id", code="key_not_found")
        return KeyRecord.from_json(orjson.loads(raw))

    async def create(self, fields: dict[str, Any], now: float | None = None) -> tuple[str, KeyRecord]:
        """A new key from validated ``fields`` (see :func:`~gateway.keys.records.parse_request`): the
        key itself (shown once, never stored) and its record."""
        now = time.time() if now is None else now
        rec = KeyRecord(id="key_" + secrets.token_hex(8), tenant=fields["tenant"] or "", admin=fields["admin"],
                        name=fields["name"], agent_of=fields["agent_of"], models=fields["models"],
                        budget_usd=fields["budget_usd"], rpm=fields["rpm"], tpm=fields["tpm"], created=now,
                        expires=fields["expires"])
        if rec.agent_of is not None:
            person = await self.get(rec.agent_of)
            if not person.usable(now):
                raise BadRequest(f"key {person.id} is revoked or expired", param="agent_of", code="person_revoked")
            if fields["tenant"] is not None and fields["tenant"] != person.tenant:
                raise BadRequest(f"an agent key belongs to its person's tenant '{person.tenant}'", param="tenant",
                                 code="invalid_tenant")
            rec = check_agent_scope(person, rec)
            if rec.expires is None or (person.expires is not None and rec.expires > person.expires):
                rec = replace(rec, expires=person.expires)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        rec = replace(rec, digest=await self.digest(token))
        line = orjson.dumps(rec.to_json())
        pipe = self.store.pipeline(transaction=True)
        pipe.set(_h(rec.digest), line)
        pipe.set(_id(rec.id), line)
        pipe.zadd(ALL, {rec.id: now})
        if rec.agent_of is not None:
            pipe.sadd(_agents(rec.agent_of), rec.id)
        await pipe.execute()
        return token, rec

    async def list_keys(self, tenant: str | None = None, limit: int = 1000) -> list[KeyRecord]:
        ids: Any = await self.store.zrevrange(ALL, 0, limit - 1)
        if not ids:
            return []
        raws: Any = await self.store.mget([_id(i.decode()) for i in ids])
        recs = [KeyRecord.from_json(orjson.loads(r)) for r in raws if r is not None]
        return [r for r in recs if tenant is None or r.tenant == tenant]

    async def revoke(self, key_id: str, now: float | None = None) -> list[KeyRecord]:
        """Revokes the key and, for a person's key, its agents' keys. Returns the records changed."""
        now = time.time() if now is None else now
        rec = await self.get(key_id)
        agent_ids: Any = await self.store.smembers(_agents(key_id)) if rec.agent_of is None else set()
        targets = [rec] + [await self.get(a.decode()) for a in sorted(agent_ids)]
        changed = [replace(r, revoked=now) for r in targets if r.revoked is None]
        pipe = self.store.pipeline(transaction=True)
        for r in changed:
            pipe.delete(_h(r.digest))
            pipe.set(_id(r.id), orjson.dumps(r.to_json()))
            self._cache.pop(r.digest, None)
            self._cache.pop("id:" + r.id, None)
        await pipe.execute()
        return changed

    async def rotate(self, key_id: str) -> tuple[str, KeyRecord]:
        """A new secret for the key: same id and scope; the old key stops working."""
        rec = await self.get(key_id)
        if rec.revoked is not None:
            raise Conflict(f"key {key_id} is revoked", code="key_revoked")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        new = replace(rec, digest=await self.digest(token))
        line = orjson.dumps(new.to_json())
        pipe = self.store.pipeline(transaction=True)
        pipe.delete(_h(rec.digest))
        pipe.set(_h(new.digest), line)
        pipe.set(_id(rec.id), line)
        await pipe.execute()
        self._cache.pop(rec.digest, None)
        self._cache.pop("id:" + rec.id, None)
        return token, new
