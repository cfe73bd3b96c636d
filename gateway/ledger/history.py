"""The ledger's history of ended tasks, for quotes and reports by model path, and tasks
opened ahead of their first request (``POST /v1/tasks``).

The history is read from the task index (``tg:{t}:tasks``, by creation time): the
tasks *created* in the window that have *ended*, newest first up to a cap, then
given oldest first. One-request tasks (no task id sent) are not in the index and
so not in the history: a job is a task with an id.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Mapping

import orjson

from gateway.accounting.quotes import Sample, model_path
from gateway.errors import Conflict
from gateway.ledger.keys import for_tenant
from gateway.ledger.writer import UNREACHABLE
from gateway.store.client import Store

ENDED = ("succeeded", "failed", "abandoned")

# KEYS[1]: the tenant's task index. ARGV[1]: JSON {task, open, id, tenant, type, now, budget}.
# Returns {'ok'} or {'exists', status}.
OPEN = r"""
local a = cjson.decode(ARGV[1])
if redis.call('EXISTS', a.task) == 1 then
  return {'exists', redis.call('HGET', a.task, 'status') or 'open'}
end
redis.call('HSET', a.task, 'task_id', a.id, 'tenant', a.tenant, 'task_type', a.type, 'status', 'open',
           'created_at', a.now, 'updated_at', a.now, 'opened', '1')
if a.budget ~= '' then redis.call('HSET', a.task, 'budget_pusd', a.budget) end
redis.call('ZADD', KEYS[1], a.now, a.id)
redis.call('ZADD', a.open, a.now, a.id)
return {'ok'}
"""


def sample_of(h: Mapping[str, str]) -> Sample:
    """One ended task's sample from its hash (decoded to str)."""
    pairs = [(h[key], key[2:-len(":model")])
             for key in h if key.startswith("d:") and key.endswith(":model")]
    return Sample(int(h.get("cost_pusd") or 0), h.get("status", ""), model_path(pairs),
                  int(h.get("input_tokens") or 0) + int(h.get("output_tokens") or 0))


async def ended_tasks(redis: Store, tenant: str, task_type: str | None, since: float, until: float,
                      cap: int) -> list[tuple[str, Sample]]:
    """(task type, sample) of the tasks created in [since, until] that ended, at most ``cap`` of
    the newest, oldest first."""
    keys = for_tenant(tenant)
    out: list[tuple[str, Sample]] = []
    offset = 0
    while len(out) < cap:
        page: Any = await redis.zrevrangebyscore(keys.tasks, str(until), str(since), start=offset, num=500)
        if not page:
            break
        offset += len(page)
        pipe = redis.pipeline(transaction=False)
        for member in page:
            pipe.hgetall(keys.task(member.decode()))
        for h in await pipe.execute():
            d = {k.decode(): v.decode() for k, v in h.items()} if h else {}
            if d.get("status") not in ENDED or (task_type and d.get("task_type") != task_type):
                continue
            out.append((d.get("task_type", ""), sample_of(d)))
            if len(out) == cap:
                break
    out.reverse()
    return out


async def open_task(redis: Store, tenant: str, task_id: str, task_type: str, budget: int | None) -> None:
    """Creates the task, open, with its budget; 409 if a task with that id exists."""
    keys = for_tenant(tenant)
    arg = {"task": keys.task(task_id), "open": keys.open, "id": task_id, "tenant": tenant, "type": task_type,
           "now": f"{time.time():.6f}", "budget": "" if budget is None else str(budget)}
    result: Any = await redis.eval(OPEN, 1, keys.tasks, orjson.dumps(arg).decode())
    if _s(result[0]) == "exists":
        raise Conflict(f"task '{task_id}' already exists (status '{_s(result[1])}')", code="task_exists")


class OpenedBudgets:
    """The budgets of tasks opened with ``POST /v1/tasks`` {"max_cost_usd"}, for the request path.

    A request that names a task reads the task's hash once per process, then remembers the
    answer: a task is marked ``opened`` only when ``POST /v1/tasks`` creates it, which it
    refuses (409) once the task exists, so an existing task's answer never changes. A task
    not in the store yet (its first request's record still queued) is not remembered.
    """

    def __init__(self, redis: Store, size: int = 20_000) -> None:
        self.redis = redis
        self.size = size
        self._known: OrderedDict[tuple[str, str], int | None] = OrderedDict()

    async def budget(self, tenant: str, task_id: str) -> int | None:
        """None: not opened so, opened without a budget, or the store is unreachable (the
        request goes on as it would without)."""
        key = (tenant, task_id)
        if key in self._known:
            self._known.move_to_end(key)
            return self._known[key]
        try:
            status, opened, budget = await self.redis.hmget(for_tenant(tenant).task(task_id), "status", "opened",
                                                            "budget_pusd")
        except UNREACHABLE:
            return None
        found = int(budget) if opened and budget else None
        if status is not None or opened:
            self.remember(tenant, task_id, found)
        return found

    def remember(self, tenant: str, task_id: str, budget: int | None) -> None:
        self._known[(tenant, task_id)] = budget
        if len(self._known) > self.size:
            self._known.popitem(last=False)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
