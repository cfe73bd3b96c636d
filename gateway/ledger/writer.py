"""Writes ledger operations to Redis off the request path, in pipelined batches.

The request path only appends to an in-memory queue and to a local journal
(one ``write()`` per operation, no fsync: the kernel holds the bytes, so they
survive a SIGKILL of this process; only a machine crash loses them). One
background task drains the queue, runs each operation's Lua script — one call
per (script, tenant) — and hands the results back. When Redis is unreachable
the batch goes to the local spool, and a replay loop puts spooled operations
back once Redis answers again. When this process dies, the next one to start
on the same spool directory moves what its journal held but Redis never
acknowledged into the spool. Replays are idempotent.

One operation that Redis refuses (a script error, an invalid record) never
takes the others with it: the script isolates records, a failed call is retried
one operation at a time, and what still fails goes to a dead-letter file and a
metric. Nothing is dropped.

Superseded intents: a request's intent (:meth:`Ledger.intent`) is only there for
the case that its final record never comes. When both are in one batch, the
intent is not sent (:func:`_supersede`): the final record's script call removes
the intent anyway. Crash safety is unchanged because the journal still holds the
intent until the whole batch is acknowledged (a kill before that replays both,
in order, and a final record, even a duplicate, removes its intent); and if the
store refuses that final record, the intent is sent after all. Young intents are
not held back to let more finals catch up: the journal acknowledges by sequence
number, so a held intent would have to cap every later acknowledgement below it,
for a small gain (most intents are already superseded under load).
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
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.ledger.journal import Journal, recover_journals
from gateway.ledger.spool import Spool
from gateway.store.client import Store, cancel_requested

log = logging.getLogger("taskgate.ledger")
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError, asyncio.TimeoutError)
BATCH = 256


INTENT, FINAL = 1, 2  # Op.kind: a request's intent; a request's final record (see _supersede)


@dataclass(frozen=True, slots=True)
class Op:
    script: str  # a name in Writer.scripts
    arg: str  # the script's JSON argument
    key: str  # the script's KEYS[1]: a key of the tenant it writes (one Redis Cluster slot)
    kind: int = 0  # INTENT, FINAL or 0 (anything else): not stored in the journal or the spool
    request_id: str = ""  # of an INTENT or a FINAL


class Writer:
    def __init__(self, redis: Store, scripts: dict[str, Any], spool: Spool,
                 on_result: Callable[[Op, Any], None], on_dead: Callable[[Op, str], None],
                 replay_interval: float = 1.0) -> None:
        self.redis = redis
        self.scripts = scripts  # name -> redis-py Script (EVALSHA with EVAL fallback)
        self.spool = spool
        self.journal = Journal(spool.dir)
        self.on_result = on_result
        self.on_dead = on_dead
        self.replay_interval = replay_interval
        self.healthy = True  # False from a failed write until Redis answers again
        self._queue: deque[tuple[int, Op]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []

    def submit(self, op: Op) -> None:
        self._queue.append((self.journal.append(op.script, op.key, op.arg), op))
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
        moved = recover_journals(self.spool.dir, self.spool)
        if moved:
            log.warning("moved %d ledger operation(s) from the journal of a process that died into the spool", moved)
        self._tasks = [asyncio.create_task(self._drain_loop()), asyncio.create_task(self._replay_loop())]

    async def stop(self, timeout: float = 15.0) -> None:
        """Flush to Redis within ``timeout``, else spool what is left: bounded, nothing lost."""
        self._wake.set()
        await self.flush(timeout=timeout)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        if self._queue:  # Redis never answered: keep the rest on disk
            self.spool.append([_line(op) for _, op in self._queue])
            self._queue.clear()
        self.journal.close(clean=True)

    async def _drain_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                items = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                await self._write([op for _, op in items])
                self.journal.ack(items[-1][0], idle=not self._queue)
            self._idle.set()
            if cancel_requested():
                return

    async def _write(self, batch: list[Op]) -> None:
        if not self.healthy:  # do not wait on a dead connection for every batch
            self.spool.append([_line(op) for op in batch])
            return
        send, superseded = _supersede(batch)
        try:
            results = await self._execute(send)
        except UNREACHABLE as exc:
            self.healthy = False
            log.error("store unreachable (%s); spooling the ledger to %s", type(exc).__name__, self.spool.dir)
            self.spool.append([_line(op) for op in batch])
            return
        except RedisError as exc:  # the whole pipeline refused (e.g. a script error): one op at a time
            results = [exc] * len(send)
        except Exception:  # a bug here must not lose the batch, nor stop the writer
            log.exception("ledger batch failed unexpectedly; spooling it")
            self.spool.append([_line(op) for op in batch])
            return
        await self._handle(send, results, superseded)

    async def _handle(self, batch: list[Op], results: list[Any], superseded: dict[str, Op] | None = None) -> None:
        for op, result in zip(batch, results):
            if isinstance(result, RedisError):  # the whole call failed: try this one alone
                result = await self._alone(op)
            refused = isinstance(result, RedisError) or (isinstance(result, list) and bool(result)
                                                         and result[0] == -1)
            if refused and superseded and op.kind == FINAL and op.request_id in superseded:
                # the final record that replaced its intent was refused: the intent stands after all
                intent = superseded.pop(op.request_id)
                await self._handle([intent], [await self._alone(intent)])
            if isinstance(result, RedisError):
                self.on_dead(op, str(result))
            elif refused:
                self.on_dead(op, _text(result[1]) if len(result) > 1 else "refused")
            else:
                self.on_result(op, result)

    async def _alone(self, op: Op) -> Any:
        try:
            return (await self._execute([op]))[0]
        except UNREACHABLE:
            self.spool.append([_line(op)])  # not refused: the store went away; replayed later
            return None
        except RedisError as exc:
            return exc

    async def _execute(self, batch: list[Op]) -> list[Any]:
        """One script call per (script, key) for the whole batch, in the order of first appearance;
        a result per op, in order."""
        groups: dict[tuple[str, str], list[int]] = {}
        for i, op in enumerate(batch):
            groups.setdefault((op.script, op.key), []).append(i)
        replies: list[Any]
        if isinstance(self.redis, RedisCluster):  # redis-py pipelines no scripts on a cluster: one call per slot
            replies = list(await asyncio.gather(*(
                self.scripts[name](keys=[key], args=[batch[i].arg for i in indexes])
                for (name, key), indexes in groups.items()), return_exceptions=True))
            for reply in replies:
                if isinstance(reply, UNREACHABLE):
                    raise reply
        else:
            replies = await self._evalsha(list(groups.items()), batch)
        results: list[Any] = [None] * len(batch)
        for indexes, reply in zip(groups.values(), replies):
            reply = unpack_reply(reply)
            for n, i in enumerate(indexes):
                results[i] = reply if isinstance(reply, RedisError) else reply[n]
        return results

    async def _evalsha(self, groups: list[tuple[tuple[str, str], list[int]]], batch: list[Op],
                       load: bool = True) -> list[Any]:
        """One pipeline of EVALSHA calls. Not through redis-py's Script objects: a pipeline holding
        those first asks SCRIPT EXISTS, one more round trip per batch (two more per request when
        requests come one at a time). A group answered NOSCRIPT (the store restarted without its
        scripts, or was flushed) did not run: the scripts are loaded and those groups sent again."""
        pipe = self.redis.pipeline(transaction=False)
        for (name, key), indexes in groups:
            pipe.execute_command("EVALSHA", self.scripts[name].sha, 1, key, *[batch[i].arg for i in indexes])
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing and load:  # once: a store that still says NOSCRIPT gets its answer back
            for name in {groups[n][0][0] for n in missing}:
                await self.redis.script_load(self.scripts[name].script)
            again = await self._evalsha([groups[n] for n in missing], batch, load=False)
            for n, reply in zip(missing, again):
                replies[n] = reply
        return replies

    async def _replay_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.replay_interval)
            ticks += 1
            if ticks % 5 == 0:  # a process on this host that died: its journal goes to the spool
                moved = recover_journals(self.spool.dir, self.spool)
                if moved:
                    log.warning("moved %d ledger operation(s) from the journal of a process that died "
                                "into the spool", moved)
            if self.healthy and not self.spool.pending():
                continue
            try:
                await self.redis.ping()
            except UNREACHABLE:
                continue
            except RedisError:
                continue
            await self._replay()
            if cancel_requested():
                return

    async def _replay(self) -> None:
        for path in self.spool.claim():
            ops = [_op(line) for line in Spool.read(path)]
            try:
                for start in range(0, len(ops), BATCH):
                    batch = ops[start:start + BATCH]
                    await self._handle(batch, await self._execute(batch))
            except UNREACHABLE:
                # Redis went away again: put the whole file back (replays are idempotent).
                path.rename(path.with_name(f"spool-{os.getpid()}-again-{path.name}"))
                return
            log.info("replayed %d spooled ledger operation(s) from %s", len(ops), path.name)
            path.unlink()
        self.healthy = True


def unpack_reply(raw: Any) -> Any:
    """The RECORD script's one-string reply as the list of results it stands for (1, 0, or a list
    whose first item is an int: [2, type, cost, outcome, waste, model], [-1, reason]); any other
    reply as it is."""
    if not isinstance(raw, bytes):
        return raw
    out: list[Any] = []
    for part in raw.split(b"\x1e") if raw else ():
        if part == b"1" or part == b"0":
            out.append(int(part))
        else:
            fields: list[Any] = part.split(b"\x1f")
            fields[0] = int(fields[0])
            out.append(fields)
    return out


def _supersede(batch: list[Op]) -> tuple[list[Op], dict[str, Op]]:
    """The batch without the intents whose request's final record is in it too (the final record
    removes its intent anyway), and those intents by request id. Nothing else changes: the
    journal keeps the intents until the whole batch is acknowledged."""
    finals = {op.request_id for op in batch if op.kind == FINAL}
    if not finals:
        return batch, {}
    send: list[Op] = []
    superseded: dict[str, Op] = {}
    for op in batch:
        if op.kind == INTENT and op.request_id in finals:
            superseded[op.request_id] = op
        else:
            send.append(op)
    return send, superseded


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _line(op: Op) -> str:
    return orjson.dumps({"script": op.script, "arg": op.arg, "key": op.key}).decode()


def _op(line: str) -> Op:
    data = orjson.loads(line)
    return Op(data["script"], data["arg"], data.get("key", ""))


def _recover_orphans(spool: Spool) -> None:
    """Claimed files of a process that died mid-replay go back to the spool."""
    for path in spool.reclaimable():
        pid = path.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.rename(path.with_name("spool-recovered-" + path.name))
