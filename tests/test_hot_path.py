"""The per-request savings of the unary hot path (issue 16) keep behaviour:

- a whole response goes out with its length (no chunked framing), and its head and body in one send;
- X-Forwarded-* from a trusted proxy still apply to the FastAPI endpoints (not to the hot handlers);
- request and generated task ids stay unique 32-hex-digit ids, also in a forked child;
- an attempt record built by the fast ``__init__`` equals the dataclass's, and is still frozen;
- the worst-case usage computed at admission is the one the budget reservation uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import socket
from typing import Any

import httpx
import orjson
import pytest

from gateway.accounting.estimate import worst_case_usage
from gateway.accounting.records import AttemptRecord
from gateway.edge.server import OneWrite
from gateway.proxy import tasks
from gateway.proxy.begin import WorstCase
from providers.base import Usage
from tests.conftest import Fakes, RedisServer, base_config, model_entry

HEX32 = re.compile(r"[0-9a-f]{32}")


# --- one send, with content-length ------------------------------------------------------------


def raw_exchange(url: str, request: bytes) -> tuple[bytes, bytes]:
    """The first recv after the request (what one send delivered), and the whole response."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        first = sock.recv(1 << 20)
        data = first
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            chunk = sock.recv(1 << 20)
            assert chunk
            body += chunk
        return first, data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" + body


def test_a_unary_answer_has_its_length_and_leaves_in_one_send(redis_server: RedisServer, fakes: Fakes,
                                                             gateway_factory: Any) -> None:
    gw = gateway_factory(base_config(redis_server.url, [model_entry("m", fakes.params("openai"), id="dep")]))
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
               b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    first, whole = raw_exchange(gw.url, request)
    head, _, payload = whole.partition(b"\r\n\r\n")
    lower = head.lower()
    print(f"first recv {len(first)} bytes of {len(whole)}")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in lower
    assert f"content-length: {len(payload)}".encode() in lower
    assert orjson.loads(payload)["object"] == "chat.completion"
    assert re.search(rb"(?m)^x-task-id: req-[0-9a-f]{32}\r$", head)
    assert re.search(rb"(?m)^x-request-id: [0-9a-f]{32}\r$", head)
    assert b"x-request-cost-usd: " in lower
    # head and body were one send: on loopback the first recv holds both
    assert first == whole
    # the FastAPI endpoints still take X-Forwarded-Proto from a trusted (local) proxy
    redirect = httpx.get(f"{gw.url}/v1/tasks/", headers={"x-forwarded-proto": "https"}, follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"].startswith("https://")


class Recording(asyncio.Transport):
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return "extra-" + name


def test_one_write_joins_a_head_to_the_body_that_follows() -> None:
    async def run() -> None:
        t = Recording()
        one = OneWrite(t, asyncio.get_running_loop())
        one.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert t.writes == []
        one.write(b"body")
        assert t.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        one.write(b"more")  # not a head: written as it comes
        assert t.writes[-1] == b"more"
        await asyncio.sleep(0)  # the flush callback finds nothing held
        assert len(t.writes) == 2
        assert one.get_extra_info("peername") == "extra-peername"

    asyncio.run(run())


def test_one_write_sends_a_lone_head_at_the_next_turn_and_before_closing() -> None:
    async def run() -> None:
        t = Recording()
        one = OneWrite(t, asyncio.get_running_loop())
        one.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")  # a stream with no event yet
        await asyncio.sleep(0)
        assert t.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
        one.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
        one.close()
        assert t.writes[-1] == b"HTTP/1.1 500 Internal Server Error\r\n\r\n" and t.closed
        one.write(b"HTTP/1.1 200 OK\r\n\r\n")  # held, then the transport is gone: dropped, not written
        await asyncio.sleep(0)
        assert len(t.writes) == 2

    asyncio.run(run())


# --- ids --------------------------------------------------------------------------------------


def test_ids_are_unique_hex_and_differ_in_a_forked_child() -> None:
    ids = {tasks.unique_hex() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(HEX32.fullmatch(i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids must not repeat the parent's
        os.write(write, tasks.unique_hex().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    parent = tasks.unique_hex()
    assert HEX32.fullmatch(child) and child[:20] != parent[:20] and child not in ids
    generated = tasks.identify({}, {"model": "m"})
    assert generated.generated and re.fullmatch(r"req-[0-9a-f]{32}", generated.id)


# --- records ----------------------------------------------------------------------------------


def record_fields() -> dict[str, Any]:
    return dict(request_id="r", attempt=0, task_id="t", task_type="x", tenant="a", operation="chat",
                model="m", deployment="d", provider="openai", outcome="ok", status=200, error_reason=None,
                usage=Usage(input_tokens=3, output_tokens=4), usage_source="provider", cost_picousd=7,
                started_at=1.5, duration_s=0.25)


def test_a_record_is_built_with_its_defaults_and_stays_frozen() -> None:
    rec = AttemptRecord(**record_fields())
    defaults = {f.name: f.default for f in dataclasses.fields(AttemptRecord)
                if f.default is not dataclasses.MISSING}
    assert {name: getattr(rec, name) for name in defaults} == defaults
    assert AttemptRecord(*record_fields().values()) == rec  # positional, as a dataclass takes them
    assert dataclasses.replace(rec, attempt=1).attempt == 1 and rec.attempt == 0
    assert hash(rec) == hash(AttemptRecord(**record_fields()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.status = 500  # type: ignore[misc]
    with pytest.raises(TypeError):
        AttemptRecord(request_id="r")  # type: ignore[call-arg]


# --- worst case -------------------------------------------------------------------------------


def test_the_worst_case_is_computed_once_and_equals_the_estimate() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello " * 50}], "max_tokens": 70, "n": 2}
    worst = WorstCase(body, 4096)
    assert worst.usage is None
    first = worst.get()
    assert first == worst_case_usage(body, 4096) and first.output_tokens == 140
    assert worst.get() is first


# --- the collector after start-up ------------------------------------------------------------


def test_start_up_objects_are_frozen_out_of_the_collector(redis_server: RedisServer) -> None:
    """A full collection under load walks only what requests made: start-up's objects (imports,
    config, the API) are frozen once warm-up has run, so its pause no longer grows with them."""
    import gc

    from tests.inproc import Harness

    config = ("model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, api_base: 'http://a/v1', "
              "api_key: k}\nstore: {url: REDIS_URL}\n")

    async def run() -> tuple[int, int]:
        async with Harness(config, f"redis://127.0.0.1:{redis_server.port}/997") as h:
            gc.unfreeze()
            before = gc.get_freeze_count()
            h.app._warm_up()
            frozen = gc.get_freeze_count()
            gc.unfreeze()
            return before, frozen

    before, frozen = asyncio.run(run())
    assert before == 0 and frozen > 10_000, (before, frozen)
