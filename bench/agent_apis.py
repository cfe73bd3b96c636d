"""CPU µs per request: Chat Completions vs Responses vs Messages, in-process, same scripted upstream.

    python bench/agent_apis.py [N] [--latency-ms MS]

The real ASGI app and services with a scripted OpenAI-compatible upstream
(tests/inproc.py) and a private redis-server; CPU time of this process
(``time.process_time``) per request, unary and streamed (7 content chunks + usage),
one request at a time and 16 at a time (the ledger batches its writes under load;
one at a time, every request's await on Redis lets it flush a batch of one).
Responses runs with ``store: true`` (the default: one Redis write per response)
and ``store: false``.

The scripted upstream answers at once, so a request that never waits on I/O lets
the ledger writer batch several requests' records; one that waits on Redis (a
stored response) makes it flush once per request at 1 at a time. ``--latency-ms``
makes the upstream answer after a timer, as a network upstream does, so every
front waits on I/O once per request.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import orjson  # noqa: E402

from tests.conftest import RedisServer  # noqa: E402
from tests.inproc import Harness  # noqa: E402
from tests.scripted import Step  # noqa: E402

CONFIG = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://upstream/v1", api_key: sk-x}
store: {url: "REDIS_URL"}
"""
WORDS = ["Hello", " from", " openai", " the", " answer", " is", " 42."]
USAGE = {"prompt_tokens": 7, "completion_tokens": 7, "total_tokens": 14}


def unary_step() -> Step:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)},
                         "finish_reason": "stop"}], "usage": USAGE}
    return Step(body=orjson.dumps(body))


def stream_step() -> Step:
    def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
        obj = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
               "usage": usage}
        return b"data: " + orjson.dumps(obj) + b"\n\n"
    chunks = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": w}) for w in WORDS]
    chunks += [chunk({}, "stop"), chunk({}, usage=USAGE), b"data: [DONE]\n\n"]
    return Step(chunks=chunks)


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "What is the answer?"}]}),
    "responses": ("/v1/responses", {"model": "m", "input": "What is the answer?"}),
    "responses (store: false)": ("/v1/responses", {"model": "m", "input": "What is the answer?", "store": False}),
    "messages": ("/v1/messages", {"model": "m", "max_tokens": 100,
                                  "messages": [{"role": "user", "content": "What is the answer?"}]}),
}


async def measure(h: Harness, path: str, body: dict[str, Any], stream: bool, n: int, concurrency: int = 1) -> float:
    """CPU µs per request over ``n`` requests, ``concurrency`` at a time."""
    body = {**body, "stream": stream} if stream else body
    rounds = n // concurrency  # exactly as many scripted answers as calls: none left over for the next case
    h.transport.steps.extend((stream_step() if stream else unary_step()) for _ in range(rounds * concurrency))
    h.transport.sent.clear()
    gc.collect()
    t0 = time.process_time()
    for _ in range(rounds):
        for r in await asyncio.gather(*(h.call(path, body) for _ in range(concurrency))):
            assert r.status == 200, r.body
    return (time.process_time() - t0) / (rounds * concurrency) * 1e6


def with_latency(h: Harness, seconds: float) -> None:
    """The scripted upstream answers after ``seconds`` (a timer, as a network upstream would: the
    event loop waits on something), instead of at once."""
    transport = h.transport
    send, stream = transport.send, transport.stream

    async def delayed_send(req: Any, timeouts: Any) -> Any:
        await asyncio.sleep(seconds)
        return await send(req, timeouts)

    @asynccontextmanager
    async def delayed_stream(req: Any, timeouts: Any) -> AsyncIterator[Any]:
        await asyncio.sleep(seconds)
        async with stream(req, timeouts) as reply:
            yield reply

    transport.send = delayed_send  # type: ignore[method-assign]
    transport.stream = delayed_stream  # type: ignore[method-assign]


async def main(n: int, latency_s: float) -> None:
    redis = RedisServer()
    redis.start()
    try:
        async with Harness(CONFIG, redis.url) as h:
            if latency_s:
                with_latency(h, latency_s)
            for stream, concurrency in ((False, 1), (True, 1), (False, 16), (True, 16)):
                for path, body in CASES.values():  # warm up every path
                    await measure(h, path, body, stream, 48, concurrency)
                results = {name: await measure(h, path, body, stream, n, concurrency)
                           for name, (path, body) in CASES.items()}
                chat = results["chat"]
                print(f"\n{'streamed' if stream else 'unary'}, {concurrency} at a time "
                      f"(N={n}, upstream latency {latency_s * 1e3:g} ms, CPU µs per request, gateway process)")
                for name, us in results.items():
                    print(f"  {name:26s} {us:8.0f} µs   {us / chat:4.2f}x chat")
    finally:
        redis.stop()


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("n", nargs="?", type=int, default=1000, help="requests per case")
    args.add_argument("--latency-ms", type=float, default=0.0,
                      help="the scripted upstream answers after this long (default: at once)")
    opts = args.parse_args()
    asyncio.run(main(opts.n, opts.latency_ms / 1e3))
