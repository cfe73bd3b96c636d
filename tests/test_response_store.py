"""The store of Responses API responses: saves that finish together go out in one round trip, and
every save still returns only once Redis has its own write (a client that chains at once finds it)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from gateway.fronts import conversations
from gateway.store.client import connect
from tests.conftest import RedisServer, free_port
from tests.inproc import Harness
from tests.scripted import Step

_dbs = itertools.count(900)
CONFIG = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-4o-mini, api_base: "http://a/v1", api_key: k}
store: {url: REDIS_URL}
"""


def stored(n: int, calls: int = 0) -> conversations.Stored:
    output: list[dict[str, Any]] = [{"id": f"msg_{n}", "type": "message", "status": "completed", "role": "assistant",
                                     "content": [{"type": "output_text", "text": f"answer {n}", "annotations": []}]}]
    output += [{"id": f"fc_{n}_{i}", "type": "function_call", "status": "completed", "call_id": f"call_{n}_{i}",
                "name": "f", "arguments": "{}"} for i in range(calls)]
    return conversations.Stored({"id": f"resp_{n}", "object": "response", "output": output},
                                [{"role": "user", "content": f"question {n}"}], f"task-{n}")


@pytest.fixture
async def store(redis_server: RedisServer) -> Any:
    client = connect(f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}")
    await client.flushdb()
    yield client
    await client.aclose()


async def test_concurrent_saves_share_one_round_trip_and_each_is_stored_when_it_returns(store: Any) -> None:
    sent: list[int] = []
    saver = conversations.saver(store)
    write = saver._write

    async def counting(commands: list[conversations.Command]) -> None:
        sent.append(len(commands))
        await write(commands)

    saver._write = counting  # type: ignore[method-assign]

    async def save_then_read(n: int) -> conversations.Stored | None:
        await conversations.save(store, "acme", stored(n, calls=n % 3), 60)
        return await conversations.load(store, "acme", f"resp_{n}")  # at once, as a chaining client does

    found = await asyncio.gather(*(save_then_read(n) for n in range(16)))
    assert sent == [16 + sum(n % 3 for n in range(16))]  # one pipeline: every response and every call index
    assert [s.response if s else None for s in found] == [stored(n, calls=n % 3).response for n in range(16)]
    assert all(s is not None and s.task_id == f"task-{n}" for n, s in enumerate(found))
    assert await conversations.task_of_call(store, "acme", "call_5_1") == "task-5"
    assert await conversations.task_of_call(store, "other", "call_5_1") is None
    assert 55 <= await store.ttl(conversations.key("acme", "resp_3")) <= 60
    assert 55 <= await store.ttl("tg:call:acme:call_5_1") <= 60

    await conversations.save(store, "acme", stored(99), 60)  # alone: its own write, next turn
    assert sent[-1] == 1
    loaded = await conversations.load(store, "acme", "resp_99")
    assert loaded is not None and loaded.messages == [{"role": "user", "content": "question 99"}]


@pytest.mark.parametrize("cancelled", [0, 1], ids=["the-writer", "one-that-joined"])
async def test_a_cancelled_save_does_not_stop_the_others(store: Any, cancelled: int) -> None:
    saves = [asyncio.ensure_future(conversations.save(store, "acme", stored(n), 60)) for n in range(3)]
    await asyncio.sleep(0)  # all three are in the batch; the first writes it
    saves[cancelled].cancel()
    await asyncio.wait_for(asyncio.gather(*saves, return_exceptions=True), 5)
    assert [s.cancelled() for s in saves] == [n == cancelled for n in range(3)]
    for n in range(3):
        if n != cancelled:
            assert await conversations.load(store, "acme", f"resp_{n}") is not None


async def test_every_save_of_a_failed_batch_raises() -> None:
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    results = await asyncio.gather(*(conversations.save(dead, "acme", stored(n), 60) for n in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, aioredis.ConnectionError) for r in results), results
    with pytest.raises(aioredis.ConnectionError):  # and a later save tries again
        await conversations.save(dead, "acme", stored(9), 60)
    await dead.aclose()


def answer(n: int, stream: bool = False) -> Step:
    text = f"answer {n}"
    if not stream:
        return Step(body=orjson.dumps({
            "id": f"c{n}", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}))
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}]
    return Step(chunks=[b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1,
                                                  "model": "gpt-4o-mini", **c}) + b"\n\n" for c in chunks]
                + [b"data: [DONE]\n\n"])


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "streamed"])
async def test_concurrent_responses_chain_at_once(redis_server: RedisServer, stream: bool) -> None:
    """16 stored responses that finish together, each continued the moment its last byte arrives."""
    async with Harness(CONFIG, f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}") as h:
        h.transport.add(*[answer(n, stream) for n in range(16)])

        async def turn(n: int) -> tuple[str, str]:
            first = await h.call("/v1/responses", {"model": "m", "input": f"question {n}", "stream": stream})
            assert first.status == 200, first.body
            if stream:
                done = [orjson.loads(frame.split(b"data: ", 1)[1]) for frame in first.body.split(b"\n\n")
                        if frame.startswith(b"event: response.completed")]
                response = done[0]["response"]
            else:
                response = orjson.loads(first.body)
            h.transport.add(answer(100 + n))
            second = await h.call("/v1/responses", {"model": "m", "input": "and then?",
                                                    "previous_response_id": response["id"]})
            assert second.status == 200, second.body
            return f"question {n}", response["output"][0]["content"][0]["text"]

        answered = dict(await asyncio.gather(*(turn(n) for n in range(16))))
        assert len(set(answered.values())) == 16
        # every second turn went upstream with its own first turn's conversation
        continued = [orjson.loads(req.body)["messages"] for req in h.transport.sent[16:]]
        assert len(continued) == 16
        for messages in continued:
            question = messages[0]["content"]
            assert messages == [{"role": "user", "content": question},
                                {"role": "assistant", "content": answered[question]},
                                {"role": "user", "content": "and then?"}]


async def test_a_batch_left_by_another_event_loop_is_not_joined(store: Any) -> None:
    other = asyncio.new_event_loop()
    try:
        conversations.saver(store).batch = conversations._Batch([], other)  # its loop never ran it
        await asyncio.wait_for(conversations.save(store, "acme", stored(7), 60), 5)
    finally:
        other.close()
    assert await conversations.load(store, "acme", "resp_7") is not None
