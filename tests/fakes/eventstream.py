"""Encoder for the AWS event-stream binary framing (application/vnd.amazon.eventstream).

Frame layout, all integers big-endian:

    total length u32 | headers length u32 | CRC32 of those 8 bytes
    headers           | payload           | CRC32 of everything before it

Each header: name length u8, name, value type u8 (7 = string), value length u16, value.
Only string headers are needed for Bedrock's ConverseStream.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson

STRING_TYPE = 7
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
PRELUDE_LENGTH = _PRELUDE.size + _CRC.size  # 12
# Alphabet of the `p` padding field that Bedrock adds to every stream event payload.
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def encode_headers(headers: list[tuple[str, str]]) -> bytes:
    out = bytearray()
    for name, value in headers:
        name_b, value_b = name.encode("utf-8"), value.encode("utf-8")
        if len(name_b) > 255 or len(value_b) > 65535:
            raise ValueError(f"header {name!r} too long")
        out += struct.pack(">B", len(name_b)) + name_b
        out += struct.pack(">BH", STRING_TYPE, len(value_b)) + value_b
    return bytes(out)


def encode_frame(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    header_bytes = encode_headers(headers)
    total = PRELUDE_LENGTH + len(header_bytes) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(header_bytes))
    prelude += _CRC.pack(zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + header_bytes + payload
    return message + _CRC.pack(zlib.crc32(message) & 0xFFFFFFFF)


def padding(seq: int) -> str:
    """A deterministic stand-in for Bedrock's variable-length `p` padding string."""
    return _PADDING[: 1 + (seq * 7) % len(_PADDING)]


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    return encode_frame(
        [(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")],
        orjson.dumps(payload),
    )


def exception_frame(exception_type: str, payload: dict[str, Any]) -> bytes:
    return encode_frame(
        [(":exception-type", exception_type), (":content-type", "application/json"),
         (":message-type", "exception")],
        orjson.dumps(payload),
    )
