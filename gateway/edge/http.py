"""Minimal raw-ASGI request and response helpers for the hot path.

The proxy endpoints skip FastAPI's dependency injection and pydantic
validation: the body is read once, parsed once with orjson, and answered with
plain ASGI messages.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from gateway.errors import (
    BadRequest,
    PayloadTooLarge,
)
from gateway.proxy.respond import Receive, Send, send_bytes


def headers_of(scope: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name. A header sent more than once is combined
    into one comma-separated value, as HTTP defines (RFC 9110, 5.3): never "the last one
    wins". Every header the gateway acts on takes a single value, so a combined one is
    refused where it is read (X-Data-Class, X-Task-Id, the budget, the key, ...)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in out:
            out[name] = f"{out[name]}, {value}"
        else:
            out[name] = value
    return out


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected before sending the whole body", code="client_disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise BadRequest("the request body is empty; expected a JSON object", code="invalid_json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    return data


async def send_json(send: Send, status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(send, status, orjson.dumps(obj), headers or [])
