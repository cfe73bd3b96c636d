"""Safe defaults: without auth, ``taskgate serve`` listens on loopback only (pure)."""

from __future__ import annotations

import ipaddress

from gateway.config.load import Config

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` and localhost; anything else (``0.0.0.0``, a name, an address) is not."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_refusal(cfg: Config, host: str) -> str | None:
    """Why ``serve`` must not listen on ``host`` with ``cfg``; None when it may."""
    if cfg.auth_enabled or is_loopback(host) or cfg.server.allow_unauthenticated:
        return None
    return (f"taskgate: refusing to listen on {host} with auth off: anyone who can reach it could spend on your "
            "upstream keys and read every task.\n"
            "  Configure auth (auth.keys, or general_settings.master_key), or listen on 127.0.0.1, or, to run "
            "open on purpose (e.g. behind an authenticating proxy), set server.allow_unauthenticated: true.")


def open_warning(cfg: Config, host: str) -> str | None:
    """The loud warning when the config allows serving ``host`` with no auth."""
    if cfg.auth_enabled or is_loopback(host):
        return None
    bar = "!" * 78
    return (f"{bar}\n  WARNING (security): auth is OFF and taskgate listens on {host}: anyone who can reach this "
            "port\n  can call every model and read every task (server.allow_unauthenticated: true)\n" + bar)


__all__ = ["bind_refusal", "is_loopback", "open_warning"]
