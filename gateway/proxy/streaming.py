"""Streaming chat completions: SSE out, whatever the provider streams in.

* The response starts with the first event the adapter produces, so a stream
  can still fail over to the next deployment until its first byte reached the
  client; after that an upstream failure becomes an in-band error event.
* Each upstream chunk is forwarded as soon as it is decoded: no buffering.
* A client that disconnects cancels the upstream call; the attempt is still
  accounted from the usage received, or estimated from what was streamed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from gateway.errors import from_upstream
from gateway.accounting.estimate import estimate_usage
from gateway.edge.http import Receive, Send
from gateway.proxy.attempts import Attempts
from gateway.proxy.begin import Call
from gateway.proxy.unary import final_error
from gateway.proxy.transport import UpstreamCallError, transport_failure
from policies.decide import Decision
from providers import ADAPTERS
from providers.base import Deployment, FailureReason, StreamDecoder, UpstreamFailure

DONE = b"data: [DONE]\n\n"


class StreamAttempts(Attempts):
    def __init__(self, gw: Any, call: Call, decision: Decision, send: Send) -> None:
        super().__init__(gw, call, decision)
        self.send = send
        self.include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        self.started_response = False
        # the attempt in progress, so that a cancellation can account it
        self.current: tuple[Deployment, float, float, StreamDecoder] | None = None
        self.ttft: float | None = None

    async def run(self) -> None:
        last: tuple[Deployment, UpstreamFailure] | None = None
        for dep, retry in self.schedule:
            up_req = await self.prepare(dep, stream=True)
            if up_req is None:
                continue
            adapter = ADAPTERS[dep.kind]
            started, t0 = time.time(), time.monotonic()
            decoder = adapter.stream_decoder(dep, self.include_usage)
            self.current, self.ttft = (dep, started, t0, decoder), None
            failure = await self._one(dep, adapter, up_req, decoder, t0)
            self.current = None
            if failure is None:
                self.succeeded(dep, t0, self.ttft)
                self._account(dep, started, t0, decoder, "ok", None, final=True)
                return
            if self.started_response:  # too late to fail over: tell the client in-band
                self.gw.health.failed(dep, failure, self.breaker_settings)
                self._account(dep, started, t0, decoder, "dropped", failure, final=True)
                await self.send_body(error_event(from_upstream(dep, failure)), more=False)
                return
            last = (dep, failure)
            usage, source = self._usage(decoder)
            if await self.failed(dep, retry, started, t0, failure, usage, source) == "stop":
                break
        raise final_error(last, self.unsupported)

    async def _one(self, dep: Deployment, adapter: Any, up_req: Any, decoder: StreamDecoder,
                   t0: float) -> UpstreamFailure | None:
        """Runs one upstream stream to its end. Returns its failure, or None."""
        try:
            async with self.gw.upstream.stream(dep, up_req) as up:
                if up.status >= 400:
                    return adapter.error(dep, up.status, up.headers, await up.read_all())
                async for data in up.chunks():
                    events = decoder.feed(data)
                    if events:
                        if self.ttft is None:
                            self.ttft = time.monotonic() - t0
                        await self.send_events(dep, events)
                    if decoder.failure is not None:
                        return decoder.failure
                events = decoder.close()
                if events:
                    await self.send_events(dep, events)
        except UpstreamCallError as exc:
            return exc.failure
        except Exception as exc:  # aiohttp payload errors, read timeouts, a dropped connection
            return transport_failure(dep, up_req, exc)
        if decoder.failure is not None:
            return decoder.failure
        if not decoder.done:
            return UpstreamFailure(FailureReason.SERVER_ERROR, 200, "the upstream ended the stream early")
        await self.send_events(dep, [])  # starts the response if the stream had no events
        await self.send_body(DONE, more=False)
        return None

    async def send_events(self, dep: Deployment, events: list[bytes]) -> None:
        if not self.started_response:
            self.started_response = True
            headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                       (b"x-accel-buffering", b"no"), *self.call.response_headers(dep)]
            await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        if events:
            await self.send_body(events[0] if len(events) == 1 else b"".join(events))

    async def send_body(self, data: bytes, more: bool = True) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    def _usage(self, decoder: StreamDecoder) -> tuple[Any, str]:
        if decoder.usage is not None:
            return decoder.usage, "provider"
        if decoder.text or self.started_response:
            return estimate_usage(self.call.body, decoder.text), "estimated"
        return None, "none"

    def _account(self, dep: Deployment, started: float, t0: float, decoder: StreamDecoder, outcome: str,
                 failure: UpstreamFailure | None, final: bool) -> None:
        usage, source = self._usage(decoder)
        status = failure.status if failure else 200
        waste = "cancelled" if outcome == "cancelled" else None
        self.record(dep, started, t0, outcome, status, failure, usage, source, final=final, ttft=self.ttft,
                    waste_reason=waste)

    def cancelled(self) -> None:
        """The client went away: account the attempt that was in progress."""
        if self.current is not None:
            dep, started, t0, decoder = self.current
            self.current = None
            self._account(dep, started, t0, decoder, "cancelled", None, final=True)


def error_event(err: Any) -> bytes:
    payload = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def stream_chat(gw: Any, call: Call, decision: Decision, send: Send, receive: Receive) -> None:
    attempts = StreamAttempts(gw, call, decision, send)
    if await until_disconnect(receive, attempts.run()):
        attempts.cancelled()


async def until_disconnect(receive: Receive, work_coro: Any) -> bool:
    """Runs ``work_coro``; cancels it if the client disconnects. True if it did."""
    work = asyncio.ensure_future(work_coro)

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        watcher.cancel()
        raise
    if work.done():
        watcher.cancel()
        work.result()  # re-raises the work's exception
        return False
    work.cancel()
    try:
        await work
    except asyncio.CancelledError:
        pass
    return True
