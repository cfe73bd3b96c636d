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

import asyncio
import weakref
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


Command = tuple[str, Union[bytes, str], int]  # SET key value EX seconds


class _Batch:
    """The saves of one turn of the event loop, written in one round trip by the first of them."""

    __slots__ = ("commands", "waiters", "loop")

    def __init__(self, commands: list[Command], loop: asyncio.AbstractEventLoop) -> None:
        self.commands = commands
        self.loop = loop
        self.waiters: list[asyncio.Future[None]] = []  # the other saves': set once Redis has the batch


class Saver:
    """Writes stored responses for one store. The saves that requests make in the same turn of
    the event loop (concurrent requests finishing together) go out as one pipeline, written by
    the first of them: one round trip, and their requests wake together. A save alone is one
    ``SET``. Each save returns once Redis has its own write, or raises what Redis raised."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.batch: _Batch | None = None  # the batch of this turn, still taking saves
        self.rescues: set[asyncio.Task[None]] = set()  # held here: the loop keeps only weak references

    async def save(self, commands: list[Command]) -> None:
        loop = asyncio.get_running_loop()
        batch = self.batch
        if batch is not None and batch.loop is loop:  # another save of this turn writes: join its round trip
            waiter: asyncio.Future[None] = loop.create_future()
            batch.commands.extend(commands)
            batch.waiters.append(waiter)
            await waiter
            return
        batch = self.batch = _Batch(list(commands), loop)  # (a batch of a loop gone is forgotten)
        try:
            await asyncio.sleep(0)  # the saves of this turn join
            self.batch = None
            await self._write(batch.commands)
        except Exception as exc:
            self._close(batch)
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise
        except BaseException:  # this request was cancelled: the others' saves still go out
            self._close(batch)
            if batch.waiters:
                task = loop.create_task(self._rescue(batch))
                self.rescues.add(task)
                task.add_done_callback(self.rescues.discard)
            raise
        for waiter in batch.waiters:
            if not waiter.done():  # not a request cancelled while it waited
                waiter.set_result(None)

    def _close(self, batch: _Batch) -> None:
        if self.batch is batch:
            self.batch = None

    async def _rescue(self, batch: _Batch) -> None:
        try:
            await self._write(batch.commands)  # SETs: writing one again is harmless
        except Exception as exc:
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _write(self, commands: list[Command]) -> None:
        if len(commands) == 1:  # the common case alone: one command (a pipeline costs several times more in redis-py)
            name, value, ex = commands[0]
            await self.store.set(name, value, ex=ex)
            return
        async with self.store.pipeline(transaction=False) as pipe:
            for name, value, ex in commands:
                pipe.set(name, value, ex=ex)
            await pipe.execute()


_savers: weakref.WeakKeyDictionary[Any, Saver] = weakref.WeakKeyDictionary()


def saver(store: Store) -> Saver:
    found = _savers.get(store)
    if found is None:
        found = _savers[store] = Saver(store)
    return found


async def save(store: Store, tenant: str, stored: Stored, retention_s: int) -> None:
    """Store ``stored`` (and index its function calls); returns once Redis has it."""
    value = orjson.dumps({"response": stored.response, "messages": stored.messages, "task": stored.task_id})
    commands: list[Command] = [(key(tenant, str(stored.response["id"])), value, retention_s)]
    for item in stored.response.get("output") or ():
        if item.get("type") == "function_call":
            commands.append((f"tg:call:{tenant}:{item['call_id']}", stored.task_id, retention_s))
    await saver(store).save(commands)


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
