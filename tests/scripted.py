"""A scripted transport: the attempt loop's upstream, in-process.

Each :class:`Step` is what the upstream does for one attempt, in the order the
loop sends them. The transport records every request it was sent, so a test
can assert the exact outbound requests (which deployment, which bytes).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Mapping

from gateway.snapshot import Timeouts
from gateway.upstream.transport import Reply, StreamReply, UpstreamCallError
from providers.base import FailureReason, UpstreamFailure, UpstreamRequest

REFUSED = UpstreamFailure(FailureReason.UNAVAILABLE, 0, "cannot connect to http://upstream: refused")
TIMED_OUT = UpstreamFailure(FailureReason.TIMEOUT, 0, "no answer from http://upstream in time")
CUT = UpstreamFailure(FailureReason.SERVER_ERROR, 0, "http://upstream closed the connection mid-response")


@dataclass
class Step:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    chunks: list[bytes] | None = None  # a stream's body, chunk by chunk
    raises: UpstreamFailure | None = None  # a transport failure instead of an answer
    cut_after: int | None = None  # streams: the connection drops after this many chunks
    gate: asyncio.Event | None = None  # the upstream waits for this before answering (or before the rest)
    gate_after: int = 0  # streams: chunks sent before waiting on ``gate``


class _Stream:
    def __init__(self, step: Step) -> None:
        self.status = step.status
        self.headers: Mapping[str, str] = dict(step.headers)
        self._step = step

    async def chunks(self) -> AsyncIterator[bytes]:
        step = self._step
        for i, data in enumerate(step.chunks or [step.body]):
            if step.gate is not None and i == step.gate_after:
                await step.gate.wait()
            if step.cut_after is not None and i >= step.cut_after:
                raise UpstreamCallError(CUT)
            yield data
            await asyncio.sleep(0)

    async def read_all(self) -> bytes:
        return self._step.body


class ScriptedTransport:
    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.sent: list[UpstreamRequest] = []
        self.timeouts: list[Timeouts] = []

    def add(self, *steps: Step) -> None:
        self.steps.extend(steps)

    def _next(self, req: UpstreamRequest, timeouts: Timeouts) -> Step:
        self.sent.append(req)
        self.timeouts.append(timeouts)
        if not self.steps:
            raise AssertionError(f"unscripted upstream call to {req.url}")
        return self.steps.pop(0)

    async def send(self, req: UpstreamRequest, timeouts: Timeouts) -> Reply:
        step = self._next(req, timeouts)
        if step.gate is not None:
            await step.gate.wait()
        if step.raises is not None:
            raise UpstreamCallError(step.raises)
        return Reply(step.status, dict(step.headers), step.body)

    @asynccontextmanager
    async def stream(self, req: UpstreamRequest, timeouts: Timeouts) -> AsyncIterator[StreamReply]:
        step = self._next(req, timeouts)
        if step.raises is not None:
            raise UpstreamCallError(step.raises)
        yield _Stream(step)

    async def close(self) -> None:
        pass

    def urls(self) -> list[str]:
        return [r.url for r in self.sent]
