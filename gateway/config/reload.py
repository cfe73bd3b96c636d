"""Hot reload: on SIGHUP or when the config file changes, validate and swap atomically.

A bad config is rejected with its reasons logged, and the old one keeps
serving. Requests in flight finish under the snapshot they started with (each
request holds its own reference). Changes to ``store`` need a restart.

The watcher knows only three things: how to read the config in force, how to
put a new one in force, and where to report each outcome ("applied" or
"rejected"); the app wires those to its snapshot and its metrics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Callable

from gateway.config import load as config_mod
from gateway.config.load import Config

log = logging.getLogger("taskgate.reload")
POLL_S = 1.0


class ConfigWatcher:
    def __init__(self, current: Callable[[], Config], apply: Callable[[Config], None],
                 report: Callable[[str], None]) -> None:
        self._current = current
        self._apply = apply
        self._report = report
        self._task: asyncio.Task[None] | None = None
        self._mtime = self._stat()

    def _stat(self) -> float | None:
        try:
            st = os.stat(self._current().source)
            return st.st_mtime_ns + st.st_size
        except OSError:
            return None

    def start(self) -> None:
        self._mtime = self._stat()
        self._task = asyncio.create_task(self._poll())
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            current = self._stat()
            if current is not None and current != self._mtime:
                self._mtime = current
                self.reload()

    def reload(self) -> bool:
        old = self._current()
        try:
            new = config_mod.load(old.source)
        except config_mod.ConfigError as exc:
            log.error("config reload rejected; the previous config keeps serving.\n%s", exc)
            self._report("rejected")
            return False
        if new.store != old.store:
            log.warning("config reload: 'store' changed; that takes a restart (the old store stays in use)")
            new = config_mod.replace_store(new, old.store)
        try:
            self._apply(new)
        except ValueError as exc:  # e.g. pricing.map_path is not a valid price map
            log.error("config reload rejected; the previous config keeps serving.\n%s", exc)
            self._report("rejected")
            return False
        self._report("applied")
        log.info("config reloaded from %s: %d public models", new.source, len(new.public_models()))
        return True
