"""Store bytes per request: 3,000 requests through the real app (scripted upstream, real Redis),
the store's memory summed key by key (MEMORY USAGE) over the gateway's own DB."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.conftest import RedisServer
from tests.inproc import Harness
from tests.scripted import Step
from tests.test_attempt_loop import OK

_dbs = itertools.count(600)
CONFIG = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://a/v1", api_key: k}
store: {url: REDIS_URL}
"""
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
N = 3000
# docs/RELIABILITY.md quotes these; measured 2026-12-03 (see the printed figures)
MAX_BYTES_ONE_REQUEST = 1_600  # no X-Task-Id: a one-request task (1 h), the dedup marker (6 h), the export record
MAX_BYTES_IN_A_TASK = 1_100  # X-Task-Id of a long task: its attempts list entry, the dedup marker, the export record


async def store_bytes(h: Harness) -> int:
    store = h.app.services.store
    total = 0
    async for key in store.scan_iter(count=1000):
        total += int(await store.memory_usage(key) or 0)
    return total


@pytest.mark.parametrize(("headers", "bound"), [([], MAX_BYTES_ONE_REQUEST),
                                                ([("X-Task-Id", "long-job")], MAX_BYTES_IN_A_TASK)],
                         ids=["one-request", "in-a-task"])
async def test_store_bytes_per_request_are_bounded(redis_server: RedisServer, headers: list[tuple[str, str]],
                                                   bound: int) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}"
    async with Harness(CONFIG, url) as h:
        h.transport.add(*[OK] * N)
        for _ in range(N):
            resp = await h.call("/v1/chat/completions", BODY, headers)
            assert resp.status == 200
        await h.flush()
        per_request = await store_bytes(h) / N
        keys = await h.app.services.store.dbsize()
    print(f"\nstore: {per_request:.0f} bytes per request over {N} requests ({keys} keys), {headers or 'no task id'}")
    assert per_request <= bound
