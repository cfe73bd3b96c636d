"""Writes ledger operations to Redis off the request path, in pipelined batches.

The request path only appends to an in-memory queue. One background task
drains it, runs each operation's Lua script in one pipeline, and hands the
results back (e.g. "this record ended a task", for metrics). When Redis is
unreachable the batch goes to the local spool, and a replay loop puts spooled
operations back once Redis answers again. Nothing is dropped: shutdown
flushes the queue to Redis, or else to the spool.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.ledger.spool import Spool

log = logging.getLogger("taskgate.ledger")
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError, asyncio.TimeoutError)
BATCH = 256


@dataclass(frozen=True, slots=True)
class Op:
    script: str  # a name in Writer.scripts
    arg: str  # the script's JSON argument


class Writer:
    def __init__(self, redis: aioredis.Redis, scripts: dict[str, Any], spool: Spool,
                 on_result: Callable[[Op, Any], None], replay_interval: float = 1.0) -> None:
        self.redis = redis
        self.scripts = scripts  # name -> redis-py Script (EVALSHA with EVAL fallback)
        self.spool = spool
        self.on_result = on_result
        self.replay_interval = replay_interval
        self.healthy = True  # False from a failed write until Redis answers again
        self._queue: deque[Op] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def submit(self, op: Op) -> None:
        self._queue.append(op)
        self._idle.clear()
        self._wake.set()

    async def flush(self, timeout: float = 10.0) -> None:
        """Waits until everything submitted so far reached Redis or the spool."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("ledger flush did not finish within %.0fs", timeout)

    async def start(self) -> None:
        _recover_orphans(self.spool)
        self._tasks = [asyncio.create_task(self._drain_loop()), asyncio.create_task(self._replay_loop())]

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await self.flush(timeout=15)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._queue:  # Redis never answered: keep the rest on disk
            self.spool.append([_line(op) for op in self._queue])
            self._queue.clear()

    async def _drain_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                await self._write(batch)
            self._idle.set()

    async def _write(self, batch: list[Op]) -> None:
        if not self.healthy:  # do not wait on a dead connection for every batch
            self.spool.append([_line(op) for op in batch])
            return
        try:
            results = await self._execute(batch)
        except UNREACHABLE as exc:
            self.healthy = False
            log.error("store unreachable (%s); spooling the ledger to %s", type(exc).__name__, self.spool.dir)
            self.spool.append([_line(op) for op in batch])
            return
        for op, result in zip(batch, results):
            if isinstance(result, RedisError):
                log.error("ledger script %s failed: %s", op.script, result)
                continue
            self.on_result(op, result)

    async def _execute(self, batch: list[Op]) -> list[Any]:
        """One script call per script name for the whole batch; a result per op, in order."""
        groups: dict[str, list[int]] = {}
        for i, op in enumerate(batch):
            groups.setdefault(op.script, []).append(i)
        pipe = self.redis.pipeline(transaction=False)
        for name, indexes in groups.items():
            await self.scripts[name](args=[batch[i].arg for i in indexes], client=pipe)
        replies = await pipe.execute(raise_on_error=False)
        results: list[Any] = [None] * len(batch)
        for (name, indexes), reply in zip(groups.items(), replies):
            for n, i in enumerate(indexes):
                results[i] = reply if isinstance(reply, RedisError) else reply[n]
        return results

    async def _replay_loop(self) -> None:
        while True:
            await asyncio.sleep(self.replay_interval)
            if self.healthy and not self.spool.pending():
                continue
            try:
                await self.redis.ping()
            except UNREACHABLE:
                continue
            except RedisError:
                continue
            await self._replay()

    async def _replay(self) -> None:
        for path in self.spool.claim():
            ops = [_op(line) for line in Spool.read(path)]
            try:
                for start in range(0, len(ops), BATCH):
                    batch = ops[start:start + BATCH]
                    for op, result in zip(batch, await self._execute(batch)):
                        if not isinstance(result, RedisError):
                            self.on_result(op, result)
            except UNREACHABLE:
                # Redis went away again: put the whole file back (replays are idempotent).
                path.rename(path.with_name(f"spool-{os.getpid()}-again-{path.name}"))
                return
            log.info("replayed %d spooled ledger operation(s) from %s", len(ops), path.name)
            path.unlink()
        self.healthy = True


def _line(op: Op) -> str:
    return orjson.dumps({"script": op.script, "arg": op.arg}).decode()


def _op(line: str) -> Op:
    data = orjson.loads(line)
    return Op(data["script"], data["arg"])


def _recover_orphans(spool: Spool) -> None:
    """Claimed files of a process that died mid-replay go back to the spool."""
    for path in spool.reclaimable():
        pid = path.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.rename(path.with_name("spool-recovered-" + path.name))
