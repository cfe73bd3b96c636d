"""A non-streaming call: the attempt loop, then one response."""

from __future__ import annotations

import time
from typing import Any

from gateway.accounting.pricing import format_usd
from gateway.edge.http import Send, send_bytes
from gateway.errors import BadRequest, GatewayError, ServiceUnavailable, from_upstream
from gateway.proxy.attempts import Attempts
from gateway.proxy.begin import Call
from gateway.proxy.transport import UpstreamCallError
from policies.decide import Decision
from providers import ADAPTERS
from providers.base import Adapter, Deployment, FailureReason, UpstreamFailure, Unsupported, Usage


async def unary(gw: Any, call: Call, decision: Decision, send: Send) -> None:
    """A non-streaming chat completion or embeddings request."""
    attempts = Attempts(gw, call, decision)
    last: tuple[Deployment, UpstreamFailure] | None = None
    for dep, retry in attempts.schedule:
        up_req = await attempts.prepare(dep, stream=False)
        if up_req is None:
            continue
        adapter = ADAPTERS[dep.kind]
        started, t0 = time.time(), time.monotonic()
        try:
            reply = await gw.upstream.call(dep, up_req)
            if reply.status >= 400:
                failure = adapter.error(dep, reply.status, reply.headers, reply.body)
            else:
                out, usage = _parse(adapter, dep, call, reply.body)
                attempts.succeeded(dep, t0)
                cost = attempts.record(dep, started, t0, "ok", reply.status, None, usage, "provider", final=True)
                headers = call.response_headers(dep)
                headers.append((b"x-request-cost-usd", format_usd(cost).encode() if cost is not None else b"0"))
                if cost is None:
                    headers.append((b"x-request-cost-source", b"unpriced"))
                await send_bytes(send, 200, out, headers)
                return
        except UpstreamCallError as exc:
            failure = exc.failure
        except (ValueError, KeyError, TypeError) as exc:
            failure = UpstreamFailure(FailureReason.PROTOCOL, 200, f"unreadable upstream response ({exc})")
        last = (dep, failure)
        if await attempts.failed(dep, retry, started, t0, failure) == "stop":
            break
    raise final_error(last, attempts.unsupported)


def _parse(adapter: Adapter, dep: Deployment, call: Call, raw: bytes) -> tuple[bytes, Usage]:
    if call.operation == "chat":
        return adapter.chat_response(dep, raw)
    return adapter.embeddings_response(dep, raw, call.body.get("encoding_format"))


def final_error(last: tuple[Deployment, UpstreamFailure] | None, unsupported: Unsupported | None) -> GatewayError:
    if last is not None:
        return from_upstream(*last)
    if unsupported is not None:
        return BadRequest(str(unsupported), code="unsupported_parameter")
    return ServiceUnavailable("no deployment could take the request", code="no_deployment")
