"""Keep-alive connections of :mod:`gateway.upstream.h1`, per (scheme, host, port), and the
request template of each upstream URL (parsed once, not per request).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from typing import Mapping

from yarl import URL

from gateway.upstream.h1 import KEEPALIVE_S, ConnectError, Connection, Target

MAX_TARGETS = 1024  # URLs remembered; more (a query that varies per request) start over
_DEFAULT_PORTS = {"http": 80, "https": 443}
_OWN = frozenset({"content-length", "transfer-encoding"})  # framing: always the client's own


def tls_context() -> ssl.SSLContext:
    """Verification on, the system's CAs (and SSL_CERT_FILE/SSL_CERT_DIR), HTTP/1.1 by ALPN."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


class Pool:
    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self._context = context
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._targets: dict[str, Target] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def target(self, url: str) -> Target:
        found = self._targets.get(url)
        if found is None:
            if len(self._targets) >= MAX_TARGETS:
                self._targets.clear()
            found = self._targets[url] = _parse(url)
        return found

    def head(self, method: str, target: Target, headers: Mapping[str, str], length: int) -> bytes:
        """The request's status line and headers, as aiohttp wrote them (less its User-Agent)."""
        own = {"host": f"Host: {target.host_header}\r\n", "accept": "Accept: */*\r\n",
               "accept-encoding": "Accept-Encoding: gzip, deflate\r\n"}
        lines = []
        authorized = False
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
                raise ValueError("a header with a line break, or a colon in its name")
            lower = name.lower()
            if lower in _OWN:
                continue
            authorized = authorized or lower == "authorization"
            own.pop(lower, None)  # the adapter's own Host, Accept or Accept-Encoding wins
            lines.append(f"{name}: {value}\r\n")
        if target.basic_auth is not None and not authorized:
            lines.append(f"Authorization: Basic {target.basic_auth}\r\n")
        return "".join((f"{method} {target.path} HTTP/1.1\r\n", *own.values(), *lines,
                        f"Content-Length: {length}\r\n\r\n")).encode("utf-8")

    async def acquire(self, target: Target, connect_timeout: float) -> Connection:
        if self._closed:
            raise RuntimeError("the upstream pool is closed")
        idle = self._idle.get(target.key)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < KEEPALIVE_S:
                    return conn
                conn.abort()
        return await self._connect(target, connect_timeout)

    async def _connect(self, target: Target, connect_timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        conn = Connection(loop, target.key)
        tls = self._tls() if target.tls else None
        try:
            async with asyncio.timeout(connect_timeout):
                await loop.create_connection(lambda: conn, target.host, target.port, ssl=tls,
                                             server_hostname=target.host if tls is not None else None)
        except OSError as exc:  # refused, unreachable, DNS, a certificate that does not verify
            conn.abort()
            raise ConnectError(exc) from exc
        except BaseException:
            conn.abort()
            raise
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = tls_context()
        return self._context

    def release(self, conn: Connection) -> None:
        """Back to the pool after a whole keep-alive exchange; closed otherwise."""
        if not conn.reusable() or self._closed:
            conn.abort()
            return
        conn.recycle()
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(KEEPALIVE_S, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        left = False
        for key, idle in list(self._idle.items()):
            if idle:
                now = idle[0].loop.time()
                keep = [c for c in idle if not c.closed and now - c.idle_since < KEEPALIVE_S]
                for conn in idle:
                    if conn not in keep:
                        conn.abort()
                idle[:] = keep
            if idle:
                left = True
            else:
                del self._idle[key]
        if left:
            self._sweeper = asyncio.get_running_loop().call_later(KEEPALIVE_S / 2, self._sweep)

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()


def _parse(raw: str) -> Target:
    url = URL(raw, encoded=True)
    scheme = url.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not url.raw_host:
        raise ValueError("not an http(s) URL with a host")
    host = url.raw_host
    port = url.port or _DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    basic = None
    if url.raw_user is not None:
        pair = f"{url.user or ''}:{url.password or ''}".encode("latin-1")
        basic = base64.b64encode(pair).decode("ascii")
    path = url.raw_path_qs or "/"
    return Target((scheme, host, port), host, port, scheme == "https", path, host_header, basic)
