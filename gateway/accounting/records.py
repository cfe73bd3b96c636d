"""What the gateway records about each upstream attempt (frozen values)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Callable

from providers.base import Usage


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One call to one deployment. A client request makes one or more attempts."""

    request_id: str
    attempt: int  # 0 for the first attempt of a request
    task_id: str
    task_type: str
    tenant: str
    operation: str  # the client API (front): chat, responses, messages or embeddings
    model: str  # the public model name
    deployment: str  # deployment id
    provider: str  # provider kind
    outcome: str  # "ok", "error", "cancelled", "dropped"
    status: int  # HTTP status returned by the upstream (0 if none)
    error_reason: str | None
    usage: Usage | None
    usage_source: str  # "provider", "estimated" or "none"
    cost_picousd: int | None  # None when the deployment has no known price
    started_at: float  # unix time
    duration_s: float
    ttft_s: float | None = None  # streams: time to first upstream event
    final: bool = True  # False when the gateway moved on to another attempt (retry/fallback)
    # "retry", "fallback", "cancelled", or "failed" (a final failed attempt that still cost, e.g. GPU seconds):
    # what was billed was not delivered
    waste_reason: str | None = None
    end_outcome: str | None = None  # a generated one-request task ends with this record
    reserved_picousd: int | None = None  # the budget reservation this (final) record releases
    budget_picousd: int | None = None  # the task's budget, when the request set one
    usage_lower_bound: bool = False  # an estimate that may miss tokens (hidden reasoning of a cancelled stream)
    spend_period: tuple[str, str] = ("", "")  # UTC (yyyymmdd, yyyymm) the tenant's spend is booked to
    one_request: bool = False  # the task is the request's own (no task id was sent)
    # who acted (gateway/config/identity.py Tenant): the key, human or agent, the agent's name, its person's key
    key_id: str | None = None
    actor: str = "human"
    agent: str | None = None
    person: str | None = None
    key_spend: tuple[str, ...] = ()  # key ids whose lifetime spend this attempt counts in (the key, its person)


def _slot_init(cls: type) -> Callable[..., None]:
    """The same ``__init__`` as the dataclass's, but setting each field through its slot's
    descriptor: a frozen dataclass's own ``__init__`` calls ``object.__setattr__`` per field, which
    costs twice as much, and a record is built on every request (twice). The record stays frozen:
    assigning a field afterwards still raises ``FrozenInstanceError``."""
    params, lines = [], []
    scope: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            scope[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        else:
            params.append(f.name)
        scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        lines.append(f"    _set_{f.name}(self, {f.name})")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(lines) + "\n", scope)
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


AttemptRecord.__init__ = _slot_init(AttemptRecord)  # type: ignore[method-assign]
