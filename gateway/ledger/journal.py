"""The writer's local journal: what this process submitted and Redis has not yet taken.

``journal-<pid>.log`` in the spool directory holds one line per operation,
``<seq>\\t<script>\\t<key>\\t<arg>``, written with one unbuffered ``write()``
when the operation is submitted, and ``ack\\t<seq>`` lines once every operation
up to ``seq`` reached Redis or the (fsynced) spool. When the queue is empty the
file is truncated, so it stays small. No fsync per operation: the kernel keeps
what was written when the process is killed, and only a crash of the machine
itself can lose the last operations.

A process that starts moves the unacknowledged operations of journals whose
process is gone into the spool, which the writer replays (idempotently).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from gateway.ledger.spool import Spool

log = logging.getLogger("taskgate.ledger")


class Journal:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / f"journal-{os.getpid()}.log"
        self._fd: int | None = None
        self._seq = 0
        self._pending: list[bytes] = []  # lines of this event-loop turn, written together at its end

    def _open(self) -> int:
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return self._fd

    def append(self, script: str, key: str, arg: str) -> int:
        """Journals one operation. The lines of one event-loop turn go out in one ``write()`` when
        the turn ends (before any I/O the turn started can complete): one syscall under load."""
        self._seq += 1
        self._pending.append(f"{self._seq}\t{script}\t{key}\t{arg}\n".encode())
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.write_pending)
            except RuntimeError:  # no event loop (tools, tests): write now
                self.write_pending()
        return self._seq

    def write_pending(self) -> None:
        if not self._pending:
            return
        data, self._pending = b"".join(self._pending), []
        try:
            os.write(self._open(), data)
        except OSError as exc:  # a full or read-only disk must not fail the request: the queue still has it
            log.error("ledger journal write failed (%s); these operations are in memory only until written", exc)

    def ack(self, seq: int, idle: bool) -> None:
        """Everything up to ``seq`` is in Redis or the spool; ``idle``: nothing else is queued."""
        self.write_pending()
        if self._fd is None:
            return
        try:
            if idle:
                os.ftruncate(self._fd, 0)
            else:
                os.write(self._fd, f"ack\t{seq}\n".encode())
        except OSError as exc:
            log.error("ledger journal ack failed: %s", exc)

    def close(self, clean: bool) -> None:
        self.write_pending()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if clean:
                self.path.unlink(missing_ok=True)


def unacknowledged(path: Path) -> list[tuple[str, str, str]]:
    """The (script, key, arg) operations of a journal after its last acknowledgement."""
    ops: list[tuple[int, str, str, str]] = []
    acked = 0
    for line in path.read_text(errors="replace").split("\n"):  # not splitlines(): \x1e is inside args
        parts = line.split("\t", 3)
        if parts[0] == "ack" and len(parts) == 2 and parts[1].isdigit():
            acked = max(acked, int(parts[1]))
        elif len(parts) == 4 and parts[0].isdigit():
            ops.append((int(parts[0]), parts[1], parts[2], parts[3]))
        # else: a line cut by the kill, mid-write: it was never acknowledged nor complete
    return [(script, key, arg) for seq, script, key, arg in ops if seq > acked]


def recover_journals(directory: Path, spool: Spool) -> int:
    """Moves what dead processes' journals hold, unacknowledged, into the spool. Returns how many."""
    import orjson

    moved = 0
    if not Path(directory).is_dir():
        return 0
    for path in sorted(Path(directory).glob("journal-*.log")):
        pid = path.stem.split("-", 1)[1]
        if not pid.isdigit() or int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        ops = unacknowledged(path)
        if ops:
            spool.append([orjson.dumps({"script": s, "arg": a, "key": k}).decode() for s, k, a in ops])
            moved += len(ops)
        path.unlink(missing_ok=True)
    return moved
