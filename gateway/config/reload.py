"""Hot reload: on SIGHUP or when the config file changes, validate and swap atomically.

A bad config is rejected with its reasons logged, and the old one keeps
serving. Requests in flight finish under the config they started with (each
request holds its own reference). Changes to ``store`` need a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from gateway.config import load as config_mod

log = logging.getLogger("taskgate.reload")
POLL_S = 1.0


class ConfigWatcher:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self._task: asyncio.Task[None] | None = None
        self._mtime = self._stat()

    def _stat(self) -> float | None:
        try:
            st = os.stat(self.gw.config.source)
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
        old = self.gw.config
        try:
            new = config_mod.load(old.source)
        except config_mod.ConfigError as exc:
            log.error("config reload rejected; the previous config keeps serving.\n%s", exc)
            self.gw.metrics.config_reloads.labels("rejected").inc()
            return False
        if new.store != old.store:
            log.warning("config reload: 'store' changed; that takes a restart (the old store stays in use)")
            new = config_mod.replace_store(new, old.store)
        self.gw.swap_config(new)
        self.gw.metrics.config_reloads.labels("applied").inc()
        log.info("config reloaded from %s: %d public models", new.source, len(new.public_models()))
        return True
