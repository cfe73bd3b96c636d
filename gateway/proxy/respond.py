"""What the proxy path sends its client: ASGI messages (types and the one whole-response helper)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from gateway.fronts.base import Headers

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers,
                     content_type: bytes = b"application/json") -> None:
    """One whole response, with its length (the server then sends no chunked framing)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *headers]})
    await send({"type": "http.response.body", "body": body})
