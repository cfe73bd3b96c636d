"""The streamed exchange: SSE out, whatever the provider streams in.

* The response starts with the first event the adapter produces, so a stream
  can still fail over to the next deployment until its first byte reached the
  client; after that an upstream failure becomes an in-band error event.
* Each upstream chunk is forwarded as soon as it is decoded: no buffering. A
  Chat Completions client on an OpenAI-compatible upstream gets the upstream's
  own bytes (the decoder's pass-through).
* A client that disconnects cancels the upstream call; the attempt loop still
  accounts the attempt, from the usage received or an estimate of what was streamed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Coroutine

from gateway.accounting.estimate import estimate_usage
from gateway.errors import GatewayError
from gateway.fronts.base import ChatFront, StreamEncoder
from gateway.proxy.attempts import Attempted
from gateway.proxy.call import Call
from gateway.proxy.respond import Receive, Send
from gateway.upstream.transport import Transport, UpstreamCallError
from providers.adapter import Adapter, StreamDecoder
from providers.base import (
    UPSTREAM_TOO_LARGE,
    Deployment,
    FailureReason,
    UpstreamFailure,
    UpstreamRequest,
    Usage,
    usage_problem,
)
from providers.canonical import ChatRequest, StreamError, StreamEvent


class StreamChat:
    def __init__(self, call: Call, transport: Transport, send: Send, front: ChatFront) -> None:
        assert isinstance(call.request, ChatRequest)
        self.call = call
        self.chat: ChatRequest = call.request
        self.upstream_model = ""  # the deployment's model, for a model-aware estimate
        self.transport = transport
        self.send = send
        self.front = front
        self.encoder: StreamEncoder = front.stream_encoder(self.chat.body, call.model)
        self.started_response = False
        self.decoder: StreamDecoder | None = None  # the attempt in progress
        self.ttft: float | None = None
        # Bytes of a started response not sent yet: what arrived with the stream's end (or after it)
        # goes out in one send with the response's last bytes (deliver, or an in-band error).
        self.held = b""

    def upstream_request(self, adapter: Adapter, dep: Deployment) -> UpstreamRequest:
        return adapter.chat_request(dep, self.chat)

    async def attempt(self, adapter: Adapter, dep: Deployment, up_req: UpstreamRequest) -> Attempted:
        decoder = self.decoder = adapter.stream_decoder(
            dep, self.chat.hands_through(adapter.kind, adapter.passthrough and self.front.takes_chat_bytes))
        self.upstream_model = dep.model
        self.ttft = None
        t0 = time.monotonic()
        feed, encode, send = decoder.feed, self.encoder.encode, self.send  # the per-chunk path, kept flat
        try:
            async with self.transport.stream(up_req, self.call.snapshot.stream_timeouts[dep.id]) as up:
                if up.status >= 400:
                    return self._failed(adapter.error(dep, up.status, up.headers, await up.read_all()))
                async for data in up.chunks():
                    events = feed(data)
                    if not events:
                        continue
                    if self.ttft is None:
                        self.ttft = time.monotonic() - t0
                    if type(events[-1]) is StreamError:
                        return await self._forward_then_fail(dep, events)
                    out = encode(events)
                    if out:
                        if not self.started_response:
                            await self._start(dep)
                        if decoder.done:  # the stream's end came with these: they go out with the last send
                            self.held += out
                        else:
                            await send({"type": "http.response.body", "body": out, "more_body": True})
                events = decoder.close()
                if events and type(events[-1]) is StreamError:
                    return await self._forward_then_fail(dep, events)
                out = encode(events)
                if out:
                    await self._start(dep)
                    self.held += out
        except UpstreamCallError as exc:
            if exc.failure.code == UPSTREAM_TOO_LARGE:  # cut, but the upstream did the work: estimate it
                estimate = estimate_usage(self.chat.body, decoder.text, self.upstream_model)
                return Attempted(exc.failure, estimate, "estimated", self.ttft, committed=self.started_response)
            return self._failed(exc.failure)
        if not decoder.done:
            return self._failed(UpstreamFailure(FailureReason.SERVER_ERROR, 200, "the upstream ended the stream early"))
        if decoder.usage is not None and (problem := usage_problem(decoder.usage)) is not None:
            return self._failed(UpstreamFailure(FailureReason.PROTOCOL, 200, f"unusable upstream usage: {problem}"))
        await self._start(dep)  # a stream with no events still gets its response
        usage, source = self.interrupted()
        return Attempted(None, usage, source, self.ttft)

    async def _forward_then_fail(self, dep: Deployment, events: list[StreamEvent]) -> Attempted:
        """The upstream reported an error in-band: send what came before it, then fail the attempt."""
        last = events[-1]
        assert isinstance(last, StreamError)
        out = self.encoder.encode(events[:-1])
        if out:  # held: the attempt loop ends a committed stream with abort(), which sends them first
            await self._start(dep)
            self.held += out
        return self._failed(last.failure)

    async def _start(self, dep: Deployment) -> None:
        if not self.started_response:
            self.started_response = True
            headers = [(b"content-type", self.encoder.content_type), (b"cache-control", b"no-cache"),
                       (b"x-accel-buffering", b"no"), *self.call.response_headers(dep)]
            await self.send({"type": "http.response.start", "status": 200, "headers": headers})

    def _failed(self, failure: UpstreamFailure) -> Attempted:
        usage, source = self.interrupted()
        return Attempted(failure, usage, source, self.ttft, committed=self.started_response)

    async def deliver(self, dep: Deployment, cost: int | None) -> None:
        usage = self.decoder.usage if self.decoder is not None else None
        await self._last(self.encoder.finish(usage))

    async def abort(self, dep: Deployment, err: GatewayError) -> None:
        await self.abort_in_band(err)

    async def abort_in_band(self, err: GatewayError) -> None:
        """Ends a started stream with an error event (a failed attempt, or the drain deadline)."""
        await self._last(self.encoder.error(err))

    async def _last(self, body: bytes) -> None:
        held, self.held = self.held, b""
        await self.send({"type": "http.response.body", "body": held + body if held else body, "more_body": False})

    def interrupted(self) -> tuple[Usage | None, str]:
        decoder = self.decoder
        if decoder is None:
            return None, "none"
        if decoder.usage is not None and usage_problem(decoder.usage) is None:
            return decoder.usage, "provider"
        text = decoder.text
        if text or self.started_response:
            return estimate_usage(self.chat.body, text, self.upstream_model), "estimated"
        return None, "none"


async def until_disconnect(receive: Receive, work_coro: Coroutine[Any, Any, None]) -> bool:
    """Runs ``work_coro`` in this task; cancels it if the client disconnects. True if it did.

    One watcher task waits on ``receive()`` and, on ``http.disconnect``, cancels this task: the
    work sees a ``CancelledError`` (the attempt loop accounts the attempt in progress), and that
    one cancellation is taken back here. A cancellation from elsewhere (the server at its drain
    deadline) propagates as it is."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    taken_back = False
    try:
        await work_coro
    except asyncio.CancelledError:
        if gone:
            taken_back = True
            if task.uncancel() == 0:
                return True
        raise  # not (only) ours: the server's, at its drain deadline
    finally:
        watcher.cancel()
        if gone and not taken_back:  # the work turned our cancellation into something else, or swallowed it
            task.uncancel()
    return gone
