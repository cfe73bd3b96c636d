"""The gateway's own store of Responses API responses (``store: true``), in Redis.

A stored response holds the response object (for ``GET /v1/responses/{id}``),
the canonical conversation up to and including its answer (what
``previous_response_id`` continues, on any provider), and the task it belonged
to (so a chain stays one task unless the client names another). Keys are per
tenant, ``tg:resp:{tenant}:{id}``: another tenant's id reads as not found. Each
key expires after ``server.responses_retention_s``.

A response's function calls are indexed too (``tg:call:{tenant}:{call_id}`` -> task),
so that a client that sends the whole conversation back each turn (the OpenAI
Agents SDK's default) keeps its run in one task: a ``function_call_output`` joins
the task of the response that made the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from providers.canonical import ChatMessage

Store = Union[aioredis.Redis, RedisCluster]  # as gateway.store.client has it (fronts do not import gateway.store)


@dataclass(frozen=True, slots=True)
class Stored:
    response: dict[str, Any]
    messages: list[ChatMessage]
    task_id: str


def key(tenant: str, response_id: str) -> str:
    return f"tg:resp:{tenant}:{response_id}"


async def save(store: Store, tenant: str, stored: Stored, retention_s: int) -> None:
    value = orjson.dumps({"response": stored.response, "messages": stored.messages, "task": stored.task_id})
    calls = [item["call_id"] for item in stored.response.get("output") or () if item.get("type") == "function_call"]
    if not calls:  # the common case: one command (a pipeline costs several times more CPU in redis-py)
        await store.set(key(tenant, str(stored.response["id"])), value, ex=retention_s)
        return
    async with store.pipeline(transaction=False) as pipe:
        pipe.set(key(tenant, str(stored.response["id"])), value, ex=retention_s)
        for call_id in calls:
            pipe.set(f"tg:call:{tenant}:{call_id}", stored.task_id, ex=retention_s)
        await pipe.execute()


async def task_of_call(store: Store, tenant: str, call_id: str) -> str | None:
    """The task of the stored response that made the function call ``call_id``."""
    found = await store.get(f"tg:call:{tenant}:{call_id}")
    return found.decode() if isinstance(found, bytes) else found


async def load(store: Store, tenant: str, response_id: str) -> Stored | None:
    raw = await store.get(key(tenant, response_id))
    if raw is None:
        return None
    data = orjson.loads(raw)
    return Stored(data["response"], data["messages"], data["task"])


async def delete(store: Store, tenant: str, response_id: str) -> bool:
    return bool(await store.delete(key(tenant, response_id)))
