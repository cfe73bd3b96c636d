"""Virtual key records and their scope rules (pure: no store, no clock read here).

A record is what the store keeps about one key, never the key itself. An agent
key (``agent_of`` set) acts for its person's key: same tenant, and a scope that
is never wider than the person's. :func:`check_agent_scope` refuses a wider one
at creation; :func:`tenant_of` narrows again at every authentication, in case
the person's scope narrowed later.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, TypeVar

from gateway.config.identity import Tenant
from gateway.config.load import TENANT_NAME
from gateway.errors import BadRequest

KEY_ID = re.compile(r"key_[0-9a-f]{16}")
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MODEL = re.compile(r"[^\s,]{1,200}")
MAX_MODELS = 100
MAX_RATE = 10**9
MAX_BUDGET_USD = Decimal(10**9)
DURATION = re.compile(r"(\d{1,6})([smhdw])")
_N = TypeVar("_N", int, Decimal)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    tenant: str
    admin: bool = False
    name: str | None = None
    agent_of: str | None = None  # the person's key id, for an agent key
    models: tuple[str, ...] | None = None  # None: every model
    budget_usd: str | None = None  # a Decimal as a string: the key's lifetime spend cap
    rpm: int | None = None
    tpm: int | None = None
    created: float = 0.0
    expires: float | None = None
    revoked: float | None = None
    digest: str = ""  # hex HMAC of the current secret: where the lookup record lives

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "KeyRecord":
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if isinstance(fields.get("models"), list):
            fields["models"] = tuple(fields["models"])
        return cls(**fields)

    @property
    def budget(self) -> Decimal | None:
        return Decimal(self.budget_usd) if self.budget_usd is not None else None

    def usable(self, now: float) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)

    def public(self) -> dict[str, Any]:
        """What the API shows: everything but the digest."""
        out = self.to_json()
        del out["digest"]
        out["object"] = "key"
        out["actor"] = "agent" if self.agent_of else "human"
        out["models"] = list(self.models) if self.models is not None else None
        return out


def tenant_of(rec: KeyRecord, person: KeyRecord | None) -> Tenant:
    """The identity a key authenticates as; an agent's scope is clamped to its person's."""
    models = frozenset(rec.models) if rec.models is not None else None
    budget, rpm, tpm = rec.budget, rec.rpm, rec.tpm
    if person is not None:
        if person.models is not None:
            models = frozenset(person.models) & models if models is not None else frozenset(person.models)
        budget = _least(budget, person.budget)
        rpm = _least(rpm, person.rpm)
        tpm = _least(tpm, person.tpm)
    return Tenant(rec.tenant, admin=rec.admin and person is None, key_id=rec.id,
                  person=person.id if person is not None else None,
                  agent=(rec.name or rec.id) if person is not None else None,
                  models=models, rpm=rpm, tpm=tpm, budget_usd=budget,
                  person_budget_usd=person.budget if person is not None else None,
                  person_limits=(person.rpm, person.tpm) if person is not None and
                  (person.rpm is not None or person.tpm is not None) else None)


def _least(a: _N | None, b: _N | None) -> _N | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def check_agent_scope(person: KeyRecord, rec: KeyRecord) -> KeyRecord:
    """An agent key made for ``person``: refused (400) when it is wider; inherits what it leaves unset."""
    if person.agent_of is not None:
        raise BadRequest(f"key {person.id} is an agent's key: an agent key cannot have agents of its own",
                         param="agent_of", code="agent_of_agent")
    if rec.name is None:
        raise BadRequest("an agent key needs a name (--name)", param="name", code="missing_name")
    if person.models is not None:
        if rec.models is None:
            rec = replace(rec, models=person.models)
        elif not set(rec.models) <= set(person.models):
            wider = sorted(set(rec.models) - set(person.models))
            raise BadRequest(f"an agent's models must be among its person's; not allowed: {', '.join(wider)}",
                             param="models", code="scope_wider_than_person")
    for field, label in (("budget_usd", "budget"), ("rpm", "rpm"), ("tpm", "tpm")):
        theirs, mine = getattr(person, field), getattr(rec, field)
        if theirs is None:
            continue
        if mine is None:
            rec = replace(rec, **{field: theirs})
        elif Decimal(str(mine)) > Decimal(str(theirs)):
            raise BadRequest(f"an agent's {label} ({mine}) must not exceed its person's ({theirs})",
                             param=field, code="scope_wider_than_person")
    return replace(rec, tenant=person.tenant, admin=False)


# --- validating what a client asks for (400 in OpenAI's shape, never 500) -------------


def parse_request(body: Any, now: float) -> dict[str, Any]:
    """The fields of ``POST /v1/keys``, validated."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_json")
    known = {"tenant", "name", "agent_of", "models", "budget_usd", "rpm", "tpm", "expires", "admin"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"unknown field '{unknown[0]}'", param=unknown[0], code="unknown_field")
    out: dict[str, Any] = {}
    tenant = body.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not TENANT_NAME.fullmatch(tenant)):
        raise BadRequest("'tenant' must be 1 to 64 characters of A-Za-z0-9_.-", param="tenant", code="invalid_tenant")
    out["tenant"] = tenant
    for field, pattern, label in (("name", NAME, "1 to 64 characters of A-Za-z0-9_.-"),
                                  ("agent_of", KEY_ID, "a key id (key_ and 16 hex digits)")):
        value = body.get(field)
        if value is not None and (not isinstance(value, str) or not pattern.fullmatch(value)):
            raise BadRequest(f"'{field}' must be {label}", param=field, code=f"invalid_{field}")
        out[field] = value
    models = body.get("models")
    if models is not None:
        if not isinstance(models, list) or not models or len(models) > MAX_MODELS \
                or not all(isinstance(m, str) and MODEL.fullmatch(m) for m in models):
            raise BadRequest(f"'models' must be a list of 1 to {MAX_MODELS} model names", param="models",
                             code="invalid_models")
        models = tuple(dict.fromkeys(models))
    out["models"] = models
    out["budget_usd"] = parse_budget(body.get("budget_usd"))
    for field in ("rpm", "tpm"):
        value = body.get(field)
        if value is not None and (type(value) is not int or not 1 <= value <= MAX_RATE):
            raise BadRequest(f"'{field}' must be an integer from 1 to {MAX_RATE}", param=field, code=f"invalid_{field}")
        out[field] = value
    admin = body.get("admin", False)
    if not isinstance(admin, bool):
        raise BadRequest("'admin' must be true or false", param="admin", code="invalid_admin")
    out["admin"] = admin
    out["expires"] = parse_expires(body.get("expires"), now)
    if out["agent_of"] is None and out["tenant"] is None:
        raise BadRequest("'tenant' is required (or 'agent_of' for an agent key)", param="tenant",
                         code="missing_tenant")
    if out["agent_of"] is not None and admin:
        raise BadRequest("an agent key cannot be an admin key", param="admin", code="invalid_admin")
    return out


def parse_budget(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or len(str(value)) > 40:
        raise BadRequest("'budget_usd' must be a positive number of USD", param="budget_usd", code="invalid_budget")
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ArithmeticError):
        amount = Decimal(-1)
    if not amount.is_finite() or amount <= 0 or amount > MAX_BUDGET_USD:
        raise BadRequest("'budget_usd' must be a positive number of USD, at most 1e9", param="budget_usd",
                         code="invalid_budget")
    return format(amount.normalize(), "f")


def parse_expires(value: Any, now: float) -> float | None:
    """``30d``/``12h``/``90m``/``45s``/``2w`` from now, an ISO 8601 time, or unix seconds."""
    if value is None:
        return None
    when: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        when = float(value)
    elif isinstance(value, str) and len(value) <= 64:
        match = DURATION.fullmatch(value.strip())
        if match:
            when = now + int(match.group(1)) * UNITS[match.group(2)]
        else:
            try:
                parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                parsed = None
            if parsed is not None:
                when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    if when is None or when != when or not now < when < now + 100 * 365 * 86400:
        raise BadRequest("'expires' must be a time in the future (within 100 years): 30d, 12h, an ISO 8601 time "
                         "or unix seconds", param="expires", code="invalid_expires")
    return when
