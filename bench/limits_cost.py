"""CPU µs per request that rate limits add, in-process (tests/inproc.py), one request at a time.

    python bench/limits_cost.py [N] [CONCURRENCY]

Three configs, the same chat request on a scripted upstream and a private redis-server:
no limit; the key's RPM (one bucket); the key's RPM and TPM and its tenant's (four buckets).
It prints this process's CPU µs per request (``time.process_time``: the gateway's work, the
Redis client included), the wall µs, and the Redis server's own µs per CHECK script call
(``INFO commandstats``). Rounds alternate between the configs to spread the machine's noise.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import orjson  # noqa: E402
import redis  # noqa: E402

from tests.conftest import RedisServer  # noqa: E402
from tests.inproc import Harness  # noqa: E402
from tests.scripted import Step  # noqa: E402

BASE = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://upstream/v1", api_key: sk-x}
store: {url: "REDIS_URL"}
auth:
  keys:
    - {key: bench-key-0001, tenant: bench KEYLIMITS}
"""
CONFIGS = {
    "no limit": (BASE.replace(" KEYLIMITS", ""), ""),
    "key rpm (1 bucket)": (BASE.replace(" KEYLIMITS", ", rpm: 1000000000"), ""),
    "key + tenant, rpm + tpm (4 buckets)": (BASE.replace(" KEYLIMITS", ", rpm: 1000000000, tpm: 1000000000"),
                                            "limits: {tenants: {bench: {rpm: 1000000000, tpm: 1000000000}}}\n"),
}
BODY = {"model": "m", "messages": [{"role": "user", "content": "What is the answer?"}], "max_tokens": 100}
USAGE = {"prompt_tokens": 7, "completion_tokens": 7, "total_tokens": 14}
STEP = orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"},
                                  "finish_reason": "stop"}], "usage": USAGE})


async def measure(h: Harness, n: int, concurrency: int = 1) -> tuple[float, float]:
    n = n // concurrency * concurrency
    h.transport.steps.extend(Step(body=STEP) for _ in range(n))
    gc.collect()
    t0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n // concurrency):
        for r in await asyncio.gather(*(h.call("/v1/chat/completions", BODY,
                                                [("Authorization", "Bearer bench-key-0001")])
                                         for _ in range(concurrency))):
            assert r.status == 200, r.body
    await h.app.services.ledger.limits.drain()
    return (time.process_time() - t0) / n * 1e6, (time.perf_counter() - w0) / n * 1e6


async def main(n: int, concurrency: int, rounds: int = 5) -> None:
    server = RedisServer()
    server.start()
    try:
        cpu: dict[str, list[float]] = {name: [] for name in CONFIGS}
        wall: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for db, (name, (cfg, extra)) in enumerate(CONFIGS.items(), start=1):
            async with Harness(cfg + extra, server.url[:-2] + f"/{db}") as h:
                await measure(h, 200)  # warm-up
        for _ in range(rounds):
            for db, (name, (cfg, extra)) in enumerate(CONFIGS.items(), start=1):
                async with Harness(cfg + extra, server.url[:-2] + f"/{db}") as h:
                    c, w = await measure(h, n, concurrency)
                    cpu[name].append(c)
                    wall[name].append(w)
        stats = redis.Redis(port=server.port).info("commandstats")
        base = min(cpu["no limit"])
        print(f"{n} chat requests, {concurrency} at a time, x {rounds} rounds (min of rounds)")
        print(f"{'config':40} {'CPU µs/req':>11} {'added':>7} {'wall µs/req':>12}")
        for name in CONFIGS:
            print(f"{name:40} {min(cpu[name]):11.0f} {min(cpu[name]) - base:7.0f} {min(wall[name]):12.0f}")
        evalsha = stats.get("cmdstat_evalsha", {})
        print(f"redis-server: EVALSHA (all scripts, incl. the ledger's) {evalsha.get('usec_per_call', 0):.1f} µs/call "
              f"over {evalsha.get('calls', 0)} calls")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, int(sys.argv[2]) if len(sys.argv) > 2 else 1))
