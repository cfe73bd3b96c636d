"""A hot reload that changes a price: requests in flight keep the price they started
with, and every request after the reload is billed at the new one — including after
the old request finishes (it must not put its old price back anywhere)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest

from tests.conftest import RedisServer
from tests.inproc import Harness
from tests.scripted import Step

_dbs = itertools.count(400)
CONFIG = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://a/v1", api_key: k, PRICES}
    model_info: {id: a}
  - model_name: m
    litellm_params: {model: openai/gpt-4o, api_base: "http://b/v1", api_key: k}
    model_info: {id: b, max_input_tokens: 100000}
store: {url: REDIS_URL}
"""
PRICE_A = "input_cost_per_token: 0.000001, output_cost_per_token: 0.000002"
PRICE_B = "input_cost_per_token: 0.000005, output_cost_per_token: 0.00001"
REPLY = orjson.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "g",
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                   "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}})
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
AT_A = "0.0012"  # 1000 x $1e-6 + 100 x $2e-6
AT_B = "0.006"  # 1000 x $5e-6 + 100 x $1e-5


@pytest.fixture
async def gw(redis_server: RedisServer) -> Any:
    url = f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}"
    async with Harness(CONFIG.replace("PRICES", PRICE_A), url) as h:
        yield h


async def test_a_reload_bills_new_requests_at_the_new_price(gw: Harness) -> None:
    gate = asyncio.Event()
    gw.transport.add(Step(200, REPLY, gate=gate))  # request 1 waits upstream while the config changes
    first = asyncio.ensure_future(gw.call("/v1/chat/completions", BODY))
    while not gw.transport.sent:
        await asyncio.sleep(0.005)

    gw.reload(CONFIG.replace("PRICES", PRICE_B))
    gw.transport.add(Step(200, REPLY))
    second = await gw.call("/v1/chat/completions", BODY)
    assert second.headers["x-request-cost-usd"] == AT_B

    gate.set()
    assert (await first).headers["x-request-cost-usd"] == AT_A, "the request in flight keeps its snapshot's price"

    gw.transport.add(Step(200, REPLY))
    third = await gw.call("/v1/chat/completions", BODY)
    assert third.headers["x-request-cost-usd"] == AT_B, "the old request put nothing stale back"
    assert [r.cost_picousd for r in gw.records] == [6 * 10**9, 12 * 10**8, 6 * 10**9]


async def test_a_reload_changes_capability_facts_for_new_requests(gw: Harness) -> None:
    # deployment a knows no context limit; after the reload it has one that this prompt exceeds
    long = {"model": "m", "messages": [{"role": "user", "content": "x" * 4000}]}
    gw.transport.add(Step(200, REPLY))
    await gw.call("/v1/chat/completions", long)
    assert gw.transport.urls()[-1].startswith("http://a/")
    gw.reload(CONFIG.replace("PRICES", PRICE_A).replace("model_info: {id: a}", "model_info: {id: a, max_input_tokens: 100}"))
    gw.transport.add(Step(200, REPLY))
    await gw.call("/v1/chat/completions", long)
    assert gw.transport.urls()[-1].startswith("http://b/"), "new facts, not ones cached for an old object"
