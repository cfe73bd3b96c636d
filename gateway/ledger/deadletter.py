"""Where a ledger operation goes when Redis refuses it: a local file and a metric, never nowhere.

``dead-<pid>.jsonl`` in the spool directory holds one JSON line per refused
operation, with the reason. An operator can inspect, fix and replay them
(``taskgate`` does not replay them by itself: Redis refused them once already).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Protocol

import orjson

from gateway.accounting.metrics import Metrics

log = logging.getLogger("taskgate.ledger")


class _Op(Protocol):
    @property
    def script(self) -> str: ...

    @property
    def arg(self) -> str: ...

    @property
    def key(self) -> str: ...


class DeadLetters:
    def __init__(self, directory: Path, metrics: Metrics) -> None:
        self.path = Path(directory) / f"dead-{os.getpid()}.jsonl"
        self.metrics = metrics
        self.count = 0

    def add(self, op: _Op, reason: str) -> None:
        self.count += 1
        self.metrics.dead_letters.labels(op.script).inc()
        log.error("the store refused a ledger %s operation (%s); kept in %s", op.script, reason, self.path)
        line = orjson.dumps({"ts": time.time(), "script": op.script, "key": op.key, "arg": op.arg,
                             "reason": reason}) + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
