"""A local append-only spool for ledger operations that Redis could not take.

Each line is one JSON operation. A process writes to its own file
(``spool-<pid>.jsonl``); replay claims a file by renaming it, so files left
by a crashed process are replayed by the next process that starts. Replays are
idempotent (records carry their request id and attempt number), so a line that
reached Redis before the connection broke is never counted twice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

log = logging.getLogger("taskgate.ledger")


class Spool:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.path = self.dir / f"spool-{os.getpid()}.jsonl"
        self.lines_written = 0

    def append(self, lines: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = "".join(line + "\n" for line in lines).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.lines_written += len(lines)
        log.warning("store unreachable: spooled %d ledger operation(s) to %s", len(lines), self.path)

    def pending(self) -> bool:
        return self.dir.is_dir() and any(self.dir.glob("spool-*.jsonl"))

    def claim(self) -> Iterator[Path]:
        """Files to replay, each renamed so that no other process replays it too."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("spool-*.jsonl")):
            claimed = path.with_name(f"replay-{os.getpid()}-{path.name}")
            try:
                path.rename(claimed)
            except FileNotFoundError:  # another process claimed it first
                continue
            yield claimed

    def reclaimable(self) -> list[Path]:
        """Claimed files whose replay did not finish (the claimer died or Redis went away again)."""
        return sorted(self.dir.glob("replay-*.jsonl")) if self.dir.is_dir() else []

    @staticmethod
    def read(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if line.strip()]
