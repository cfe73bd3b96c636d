"""A budget that isn't set is absent, never a sentinel amount (issue 14): a tenant with no daily
budget used to be told its daily budget was "4611686.018427387904 USD" (2**62 pico-dollars)."""

from __future__ import annotations

import itertools

import pytest

from tests.conftest import RedisServer
from tests.inproc import Harness
from tests.scripted import Step
from tests.test_attempt_loop import completion

_dbs = itertools.count(460)

CONFIG = """
model_list:
  - model_name: dear
    litellm_params: {model: openai/gpt-a, api_base: "http://a/v1", api_key: key-a,
                     input_cost_per_token: 1000, output_cost_per_token: 1000}
    model_info: {id: a}
store: {url: REDIS_URL}
budgets:
  tenants:
    default: {monthly_usd: 100}
"""
HUGE = {"model": "dear", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**8, "n": 128}


@pytest.mark.parametrize("budgets", ["monthly", "none"])
async def test_no_sentinel_in_a_refusal(redis_server: RedisServer, budgets: str) -> None:
    config = CONFIG if budgets == "monthly" else CONFIG.replace("default: {monthly_usd: 100}", "{}")
    async with Harness(config, f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}") as gw:
        gw.transport.add(Step(200, completion()))
        resp = await gw.call("/v1/chat/completions", HUGE)  # worst case: 1.28e10 tokens at $1000 = $1.28e13
        print(f"\n{budgets}: {resp.status} {resp.body[:300]!r}")
        assert b"4611686" not in resp.body
        if budgets == "monthly":
            assert resp.status == 429 and b"monthly budget" in resp.body and b"is 100.0 USD" in resp.body
        else:  # no budget at all: nothing refuses it (the upstream answers)
            assert resp.status == 200
