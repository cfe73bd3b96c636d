"""Every store key the ledger uses, built here and nowhere else (pure).

A key is ``tg:{<tenant>}:<kind>:<id>``:

- the tenant is a Redis Cluster *hash tag* (the part in braces), so every key of
  one tenant lives in one slot and each multi-key script touches one slot;
- tenant names are validated (:data:`TENANT_NAME`): no braces, colons or other
  separators, so one tenant's keys can never be another's;
- the kind comes before any id a client chose, and ids are never split on, so
  ``poison`` and ``poison:attempts`` are simply two task ids: a task hash and an
  attempts list can never share a key, whatever the ids.

    tg:{t}:task:<task id>          hash: the task's state and running totals
    tg:{t}:att:<task id>           list: the task's attempt records (JSON, last 1000)
    tg:{t}:tasks                   zset: task ids by creation time (listing; trimmed by retention)
    tg:{t}:open                    zset: task ids of open tasks by last activity (sweeper)
    tg:{t}:seen:<request>:<n>      string: idempotency marker of one attempt record (dedup window)
    tg:{t}:agg:<yyyymmdd>          hash: per task type and outcome totals of tasks that ended that day
    tg:{t}:aggw:<yyyymmdd>         hash: per actor (person key / agent) and outcome totals of those tasks
    tg:{t}:kspend:<key id>         hash: a virtual key's lifetime spent and reserved money (its budget)
    tg:{t}:spend:d:<yyyymmdd>      hash: the tenant's spent and reserved money that day
    tg:{t}:spend:m:<yyyymm>        hash: ... that month
    tg:{t}:records                 stream: every attempt record, for export (approximately bounded)
    tg:{t}:intents                 hash: request id -> the record to write if that request is interrupted
    tg:{t}:deadlines               zset: request ids of intents by lease deadline (renewed while in flight)
    tg:{t}:settled:<request>       string: this request was settled as interrupted (dedup window)
    tg:{t}:route:<public model>    hash: cost_per_success job outcomes, "<task type>|<deployment>|j|s|c"
                                   (decayed jobs and successes x1000, cost in pico-dollars; written when
                                   a task ends, see docs/OUTCOME-ATTRIBUTION.md)
    tg:tenants                     set: tenants the ledger has seen (for the sweeper; its own slot)
    tg:audit                       stream: policy denials, redactions, escalations (no prompt text)
    tg:health                      hash: circuit breaker state per deployment (gateway/upstream/health.py)

Keys of the first layout (``tg:task:<t>:<id>``, before these rules) are not
read: a store written by an older gateway starts empty for this one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from gateway.config.load import TENANT_NAME  # the config refuses any other tenant name
TENANTS = "tg:tenants"
AUDIT = "tg:audit"


class BadTenant(ValueError):
    pass


def check_tenant(name: str) -> str:
    if not TENANT_NAME.fullmatch(name):
        raise BadTenant(f"tenant name {name!r} must be 1 to 64 characters of A-Za-z0-9_.-")
    return name


@dataclass(frozen=True, slots=True)
class TenantKeys:
    """The keys of one tenant. Build with :func:`for_tenant`."""

    base: str  # "tg:{tenant}:"

    def task(self, task_id: str) -> str:
        return f"{self.base}task:{task_id}"

    def attempts(self, task_id: str) -> str:
        return f"{self.base}att:{task_id}"

    @property
    def task_prefix(self) -> str:
        return f"{self.base}task:"

    @property
    def attempts_prefix(self) -> str:
        return f"{self.base}att:"

    @property
    def tasks(self) -> str:
        return f"{self.base}tasks"

    @property
    def open(self) -> str:
        return f"{self.base}open"

    def seen(self, request_id: str, attempt: int) -> str:
        return f"{self.base}seen:{request_id}:{attempt}"

    def agg(self, day: str) -> str:
        return f"{self.base}agg:{day}"

    def agg_who(self, day: str) -> str:
        return f"{self.base}aggw:{day}"  # END_TASK derives this from agg_prefix: keep the two in step

    def key_spend(self, key_id: str) -> str:
        return f"{self.base}kspend:{key_id}"

    @property
    def agg_prefix(self) -> str:
        return f"{self.base}agg:"

    def spend(self, period: tuple[str, str]) -> list[str]:
        day, month = period
        return [f"{self.base}spend:d:{day}", f"{self.base}spend:m:{month}"]

    @property
    def records(self) -> str:
        return f"{self.base}records"

    @property
    def intents(self) -> str:
        return f"{self.base}intents"

    @property
    def deadlines(self) -> str:
        return f"{self.base}deadlines"

    def settled(self, request_id: str) -> str:
        return f"{self.base}settled:{request_id}"

    def route(self, model: str) -> str:
        return f"{self.base}route:{model}"

    @property
    def seen_prefix(self) -> str:
        return f"{self.base}seen:"

    @property
    def settled_prefix(self) -> str:
        return f"{self.base}settled:"


@functools.lru_cache(maxsize=1024)
def for_tenant(tenant: str) -> TenantKeys:
    return TenantKeys("tg:{" + check_tenant(tenant) + "}:")
