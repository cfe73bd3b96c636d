"""The gateway in-process: the real ASGI app and services, a scripted upstream, a real Redis.

``Harness`` builds a :class:`~gateway.edge.asgi.TaskgateApp` from a YAML config,
starts its services with a :class:`~tests.scripted.ScriptedTransport` instead of
the network, taps every attempt record, and calls the app through ASGI messages.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from gateway.accounting.accountant import Accountant
from gateway.accounting.records import AttemptRecord
from gateway.config.load import parse
from gateway.edge.asgi import TaskgateApp
from gateway.ledger.ledger import Ledger
from gateway.services import open_services
from tests.scripted import ScriptedTransport


class Tap:
    """Every attempt record, in order, then on to the ledger as usual."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.records: list[AttemptRecord] = []

    def record(self, rec: AttemptRecord) -> str:
        self.records.append(rec)
        return self.ledger.record(rec)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    chunks: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> Any:
        return orjson.loads(self.body)


class Harness:
    def __init__(self, yaml_text: str, redis_url: str) -> None:
        self.redis_url = redis_url
        self.yaml = yaml_text.replace("REDIS_URL", redis_url)
        self.transport = ScriptedTransport()
        self.app = TaskgateApp(parse(self.yaml, "inproc.yaml", {}))
        self.tap: Tap | None = None

    async def __aenter__(self) -> "Harness":
        services = await open_services(self.app.snapshots, self.app.metrics, transport=self.transport)
        await services.store.flushdb()
        self.tap = Tap(services.ledger)
        await self.app.start(replace(services, accountant=Accountant(services.metrics, self.tap)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.app.stop()

    @property
    def records(self) -> list[AttemptRecord]:
        assert self.tap is not None
        return self.tap.records

    async def call(self, path: str, body: dict[str, Any] | bytes, headers: list[tuple[str, str]] | None = None,
                   disconnect: asyncio.Event | None = None) -> Response:
        """One request through the ASGI app; ``disconnect``, once set, makes the client go away."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(b"content-type", b"application/json"),
                             *((k.lower().encode(), v.encode()) for k, v in headers or [])]}
        sent_body = False
        done = asyncio.Event()
        response: Response | None = None

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": raw, "more_body": False}
            waiters = [asyncio.ensure_future(done.wait())]
            if disconnect is not None:
                waiters.append(asyncio.ensure_future(disconnect.wait()))
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal response
            if message["type"] == "http.response.start":
                if response is not None:
                    raise RuntimeError("response already started")
                response = Response(message["status"], {k.decode(): v.decode() for k, v in message["headers"]})
            elif message["type"] == "http.response.body":
                assert response is not None
                if message.get("body"):
                    response.chunks.append(message["body"])
                if not message.get("more_body"):
                    done.set()

        await self.app(scope, receive, send)
        assert response is not None, "the app sent no response"
        return response

    def reload(self, yaml_text: str) -> None:
        """What a hot reload does, with this config text (``REDIS_URL`` filled in)."""
        self.app.apply_config(parse(yaml_text.replace("REDIS_URL", self.redis_url), "inproc.yaml", {}))

    async def flush(self) -> None:
        await self.app.services.ledger.flush()
