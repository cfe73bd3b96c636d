"""The one attempt loop, in-process: every retry, fallback and stop decision, the
records each attempt leaves, budget reservation and settlement, and streams that
fail before or after their first byte, or are cancelled by the client.

The gateway runs in this process (tests/inproc.py) against a scripted upstream
(tests/scripted.py) and a real Redis; nothing goes over the network.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest

from gateway.ledger.keys import for_tenant
from tests.conftest import RedisServer
from tests.inproc import Harness
from tests.scripted import REFUSED, TIMED_OUT, Step

_dbs = itertools.count(200)

CONFIG = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-a, api_base: "http://a/v1", api_key: key-a,
                     input_cost_per_token: 0.000001, output_cost_per_token: 0.000002, max_retries: 1}
    model_info: {id: a}
  - model_name: m
    litellm_params: {model: openai/gpt-b, api_base: "http://b/v1", api_key: key-b,
                     input_cost_per_token: 0.000003, output_cost_per_token: 0.000004}
    model_info: {id: b}
  - model_name: bedrock-only
    litellm_params: {model: bedrock/anthropic.claude-3-5-haiku-20241022-v1:0, aws_region_name: us-east-1,
                     aws_access_key_id: AKID, aws_secret_access_key: secret,
                     aws_bedrock_runtime_endpoint: "http://br"}
    model_info: {id: br}
  - model_name: mixed
    litellm_params: {model: bedrock/anthropic.claude-3-5-haiku-20241022-v1:0, aws_region_name: us-east-1,
                     aws_access_key_id: AKID, aws_secret_access_key: secret,
                     aws_bedrock_runtime_endpoint: "http://br"}
    model_info: {id: br2}
  - model_name: mixed
    litellm_params: {model: openai/gpt-c, api_base: "http://c/v1", api_key: key-c}
    model_info: {id: c}
store: {url: REDIS_URL}
routing:
  retries: {max: 0, backoff_base_s: 0, backoff_max_s: 0}
budgets:
  tenants:
    default: {daily_usd: 100}
"""
A, B = "http://a/v1/chat/completions", "http://b/v1/chat/completions"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COST_A = 10 * 10**6 + 5 * 2 * 10**6  # 10 input and 5 output tokens at A's prices, in pico-dollars
COST_B = 10 * 3 * 10**6 + 5 * 4 * 10**6


def completion(text: str = "hello", prompt: int = 10, completion_tokens: int = 5) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                  "total_tokens": prompt + completion_tokens}})


def error(status: int, code: str = "x", **headers: str) -> Step:
    return Step(status, orjson.dumps({"error": {"message": f"upstream says {status}", "type": "t", "param": None,
                                                "code": code}}), headers)


OK = Step(200, completion())


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}"


@pytest.fixture
async def gw(redis_url: str) -> Any:
    async with Harness(CONFIG, redis_url) as h:
        yield h


# (name, upstream steps, client status, urls the loop called, records: (deployment, outcome, final, waste))
UNARY_CASES = [
    ("first attempt succeeds", [OK], 200, [A], [("a", "ok", True, None)]),
    ("5xx is retried on the same deployment", [error(500), OK], 200, [A, A],
     [("a", "error", False, "retry"), ("a", "ok", True, None)]),
    ("retries exhausted, then the next deployment", [error(500), error(503), OK], 200, [A, A, B],
     [("a", "error", False, "retry"), ("a", "error", False, "fallback"), ("b", "ok", True, None)]),
    ("429 is not retried here: the next deployment at once", [error(429, "rate_limit_exceeded", **{"retry-after": "3"}), OK],
     200, [A, B], [("a", "error", False, "fallback"), ("b", "ok", True, None)]),
    ("401 (our key) moves on", [error(401), OK], 200, [A, B], [("a", "error", False, "fallback"), ("b", "ok", True, None)]),
    ("the client's 400 stops: same everywhere", [error(400)], 400, [A], [("a", "error", True, None)]),
    ("a content filter stops", [error(400, "content_filter")], 400, [A], [("a", "error", True, None)]),
    ("connection refused is retried", [Step(raises=REFUSED), OK], 200, [A, A],
     [("a", "error", False, "retry"), ("a", "ok", True, None)]),
    ("timeouts everywhere: 504 after the last", [Step(raises=TIMED_OUT)] * 3, 504, [A, A, B],
     [("a", "error", False, "retry"), ("a", "error", False, "fallback"), ("b", "error", True, None)]),
    ("an unreadable 200 is a protocol failure, retried", [Step(200, b"not json"), OK], 200, [A, A],
     [("a", "error", False, "retry"), ("a", "ok", True, None)]),
    ("every deployment fails: the last failure decides", [error(500), error(500), error(503)], 502, [A, A, B],
     [("a", "error", False, "retry"), ("a", "error", False, "fallback"), ("b", "error", True, None)]),
]


@pytest.mark.parametrize(("name", "steps", "status", "urls", "records"), UNARY_CASES, ids=[c[0] for c in UNARY_CASES])
async def test_unary_decisions(gw: Harness, name: str, steps: list[Step], status: int, urls: list[str],
                               records: list[tuple[str, str, bool, str | None]]) -> None:
    gw.transport.add(*steps)
    resp = await gw.call("/v1/chat/completions", CHAT, [("X-Task-Id", "loop-1")])
    assert resp.status == status, resp.body
    assert gw.transport.urls() == urls
    got = [(r.deployment, r.outcome, r.final, r.waste_reason) for r in gw.records]
    assert got == records
    assert [r.attempt for r in gw.records] == list(range(len(records)))
    assert len({r.request_id for r in gw.records}) == 1
    assert resp.headers["x-task-id"] == "loop-1"
    if status == 200:
        assert resp.body == completion(), "the upstream's bytes pass through unchanged"
        final = gw.records[-1]
        assert resp.headers["x-request-cost-usd"] == {"a": "0.00002", "b": "0.00005"}[final.deployment]
    else:
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    if status == 429 or any(s.headers.get("retry-after") for s in steps) and status != 200:
        assert "retry-after" in resp.headers


async def test_each_failed_attempt_is_priced_from_what_the_upstream_billed(gw: Harness) -> None:
    # a 200 that the gateway could not use still billed tokens; it is recorded, at the snapshot's price
    gw.transport.add(Step(200, completion()[:-1]), OK)
    resp = await gw.call("/v1/chat/completions", CHAT)
    assert resp.status == 200
    assert [r.cost_picousd for r in gw.records] == [0, COST_A]  # unreadable: nothing known was billed
    assert [r.usage_source for r in gw.records] == ["none", "provider"]


async def test_open_breaker_skips_the_deployment_without_a_record(gw: Harness) -> None:
    from policies.health import BreakerState

    gw.app.services.health.breakers["a"] = BreakerState("open", 5, 1e18, 0, "server_error")
    gw.transport.add(OK)
    resp = await gw.call("/v1/chat/completions", CHAT)
    assert resp.status == 200 and gw.transport.urls() == [B]
    assert [(r.deployment, r.outcome) for r in gw.records] == [("b", "ok")]


async def test_budget_is_reserved_before_the_first_attempt_and_released_by_the_last(gw: Harness) -> None:
    gw.transport.add(error(500), error(500), OK)
    resp = await gw.call("/v1/chat/completions", {**CHAT, "max_tokens": 100},
                         [("X-Task-Id", "budgeted"), ("X-Task-Budget-USD", "1")])
    assert resp.status == 200
    reserved = [r.reserved_picousd for r in gw.records]
    assert reserved[:-1] == [None, None] and reserved[-1] and reserved[-1] > 0, "only the final record releases"
    assert gw.records[0].budget_picousd == 10**12 and gw.records[1].budget_picousd is None
    await gw.flush()
    store = gw.app.services.store
    task = await store.hgetall(for_tenant("default").task("budgeted"))
    assert int(task[b"reserved_pusd"]) == 0, "the reservation came back"
    assert int(task[b"cost_pusd"]) == COST_B


async def test_a_budget_too_small_is_refused_before_any_upstream_call(gw: Harness) -> None:
    resp = await gw.call("/v1/chat/completions", {**CHAT, "max_tokens": 1000},
                         [("X-Task-Id", "tiny"), ("X-Task-Budget-USD", "0.000001")])
    assert resp.status == 429 and resp.json()["error"]["code"] == "budget_exceeded"
    assert gw.transport.sent == [] and gw.records == []
    assert resp.headers["x-task-id"] == "tiny"


# --- parameters a deployment cannot honour --------------------------------------------------


async def test_a_parameter_no_deployment_can_honour_is_refused_by_name(gw: Harness) -> None:
    body = {**CHAT, "model": "bedrock-only", "response_format": {"type": "json_object"}}
    resp = await gw.call("/v1/chat/completions", body)
    assert resp.status == 400
    err = resp.json()["error"]
    assert err["code"] == "unsupported_parameter" and err["param"] == "response_format"
    assert "response_format" in err["message"]
    assert gw.transport.sent == [] and gw.records == []


async def test_a_parameter_one_deployment_can_honour_routes_there(gw: Harness) -> None:
    gw.transport.add(OK)
    resp = await gw.call("/v1/chat/completions", {**CHAT, "model": "mixed", "seed": 7})
    assert resp.status == 200
    assert gw.transport.urls() == ["http://c/v1/chat/completions"]
    assert orjson.loads(gw.transport.sent[0].body)["seed"] == 7, "sent, not dropped"


async def test_without_the_parameter_the_first_deployment_serves(gw: Harness) -> None:
    gw.transport.add(Step(200, orjson.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
                                             "stopReason": "end_turn",
                                             "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}})))
    resp = await gw.call("/v1/chat/completions", {**CHAT, "model": "mixed"})
    assert resp.status == 200 and gw.transport.urls()[0].startswith("http://br/model/")


# --- streams ------------------------------------------------------------------------------


def sse(*texts: str, usage: bool = True, finish: bool = True) -> list[bytes]:
    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "g",
                                         "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}) + b"\n\n"

    out = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": t}) for t in texts]
    if finish:
        out.append(chunk({}, "stop"))
    if usage:
        out.append(b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"g","choices":[],'
                   b'"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}\n\n')
    if finish:
        out.append(b"data: [DONE]\n\n")
    return out


STREAM = {**CHAT, "stream": True}


def texts(body: bytes) -> str:
    out = []
    for event in body.split(b"\n\n"):
        if event.startswith(b"data: {"):
            data = orjson.loads(event[6:])
            out += [c["delta"].get("content") or "" for c in data.get("choices") or []]
    return "".join(out)


async def test_stream_passes_the_upstream_through_and_ends_with_done(gw: Harness) -> None:
    gw.transport.add(Step(chunks=sse("Hel", "lo")))
    resp = await gw.call("/v1/chat/completions", STREAM)
    assert resp.status == 200 and resp.headers["content-type"] == "text/event-stream"
    assert resp.body == b"".join(sse("Hel", "lo", usage=False)), "byte for byte, less the usage chunk not asked for"
    assert [(r.deployment, r.outcome, r.usage_source, r.cost_picousd) for r in gw.records] == [
        ("a", "ok", "provider", COST_A)]


async def test_stream_failing_before_its_first_byte_fails_over(gw: Harness) -> None:
    gw.transport.add(error(503), Step(raises=REFUSED), Step(chunks=sse("from b")))
    resp = await gw.call("/v1/chat/completions", STREAM)
    assert resp.status == 200 and texts(resp.body) == "from b"
    assert [(r.deployment, r.outcome, r.final) for r in gw.records] == [
        ("a", "error", False), ("a", "error", False), ("b", "ok", True)]


async def test_stream_in_band_error_before_content_fails_over(gw: Harness) -> None:
    gw.transport.add(Step(chunks=[b'data: {"error": {"message": "overloaded", "code": "server_error"}}\n\n']),
                     Step(chunks=sse("ok")))
    resp = await gw.call("/v1/chat/completions", STREAM)
    assert texts(resp.body) == "ok"
    assert [(r.deployment, r.outcome) for r in gw.records] == [("a", "error"), ("a", "ok")]


async def test_stream_cut_after_content_is_committed_and_ends_in_band(gw: Harness) -> None:
    gw.transport.add(Step(chunks=sse("partial", "never"), cut_after=2))
    resp = await gw.call("/v1/chat/completions", STREAM)
    assert resp.status == 200 and texts(resp.body) == "partial"
    last = resp.body.rstrip().split(b"\n\n")[-1]
    assert orjson.loads(last[6:])["error"]["code"] == "upstream_error"
    assert b"[DONE]" not in resp.body
    assert len(gw.transport.sent) == 1, "no failover once the client has bytes"
    rec = gw.records[-1]
    assert (rec.outcome, rec.final, rec.usage_source) == ("dropped", True, "estimated")
    assert rec.cost_picousd and rec.cost_picousd > 0


async def test_stream_ending_early_without_done_is_a_failure(gw: Harness) -> None:
    gw.transport.add(Step(chunks=sse("a", usage=False, finish=False)))
    resp = await gw.call("/v1/chat/completions", STREAM)
    assert gw.records[-1].outcome == "dropped" and b"upstream_error" in resp.body


async def test_a_client_that_goes_away_cancels_the_upstream_and_the_attempt_is_still_recorded(gw: Harness) -> None:
    gate, gone = asyncio.Event(), asyncio.Event()
    gw.transport.add(Step(chunks=sse("one", "two", "three"), gate=gate, gate_after=2))
    call = asyncio.ensure_future(gw.call("/v1/chat/completions", STREAM, disconnect=gone))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if gw.transport.sent:
            break
    await asyncio.sleep(0.05)
    gone.set()
    resp = await call
    assert texts(resp.body) == "one"
    assert [(r.outcome, r.waste_reason, r.usage_source, r.final) for r in gw.records] == [
        ("cancelled", "cancelled", "estimated", True)]
    assert gw.records[0].usage is not None and gw.records[0].usage.output_tokens >= 1


async def test_stream_without_usage_asks_for_it_and_hides_it(gw: Harness) -> None:
    gw.transport.add(Step(chunks=sse("x")))
    await gw.call("/v1/chat/completions", STREAM)
    sent = orjson.loads(gw.transport.sent[0].body)
    assert sent["stream_options"] == {"include_usage": True}


async def test_stream_with_include_usage_gets_the_usage_chunk(gw: Harness) -> None:
    gw.transport.add(Step(chunks=sse("x")))
    resp = await gw.call("/v1/chat/completions", {**STREAM, "stream_options": {"include_usage": True}})
    assert resp.body == b"".join(sse("x"))


async def test_a_stream_read_whole_goes_out_byte_exact_in_one_send_with_done(gw: Harness) -> None:
    """The usual fast upstream: every event in one read. With include_usage the client gets the
    upstream's bytes unsplit, and they go out with [DONE] in the response's last send."""
    gw.transport.add(Step(chunks=[b"".join(sse("Hel", "lo"))]))
    resp = await gw.call("/v1/chat/completions", {**STREAM, "stream_options": {"include_usage": True}})
    assert resp.chunks == [b"".join(sse("Hel", "lo"))], "one body message, the upstream's bytes as they are"
    assert [(r.outcome, r.usage_source, r.cost_picousd) for r in gw.records] == [("ok", "provider", COST_A)]


async def test_a_stream_read_whole_without_include_usage_hides_usage_in_one_send(gw: Harness) -> None:
    gw.transport.add(Step(chunks=[b"".join(sse("Hel", "lo"))]))
    resp = await gw.call("/v1/chat/completions", STREAM)
    assert resp.chunks == [b"".join(sse("Hel", "lo", usage=False))]
    assert [(r.outcome, r.usage_source, r.cost_picousd) for r in gw.records] == [("ok", "provider", COST_A)]


async def test_chunks_that_arrive_apart_are_sent_as_they_arrive(gw: Harness) -> None:
    events = sse("Hel", "lo")
    gw.transport.add(Step(chunks=events))
    resp = await gw.call("/v1/chat/completions", {**STREAM, "stream_options": {"include_usage": True}})
    assert resp.chunks == events, "no content is held back before the stream's end"


async def test_content_that_came_with_the_end_is_sent_before_an_in_band_error(gw: Harness) -> None:
    """Usage the upstream got wrong fails a stream that already ended: its held bytes still go out first."""
    bad = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":-1,"completion_tokens":5}}\n\n'
    gw.transport.add(Step(chunks=[b"".join(sse("Hel", usage=False)).replace(b"data: [DONE]", bad + b"data: [DONE]")]))
    resp = await gw.call("/v1/chat/completions", STREAM)
    assert texts(resp.body) == "Hel" and len(resp.chunks) == 1, "the held bytes and the error in one send"
    assert orjson.loads(resp.body.rstrip().split(b"\n\n")[-1][6:])["error"]["code"] == "upstream_protocol_error"
    assert gw.records[-1].outcome == "dropped"


@pytest.mark.parametrize("bad", [{"stream": "yes"}, {"stream": 1}, {"stream_options": "x"}, {"stream_options": []},
                                 {"stream": True, "stream_options": {"include_usage": "yes"}}])
async def test_stream_fields_of_the_wrong_type_are_refused(gw: Harness, bad: dict[str, Any]) -> None:
    resp = await gw.call("/v1/chat/completions", {**CHAT, **bad})
    assert resp.status == 400 and resp.json()["error"]["code"] == "invalid_type"
    assert gw.transport.sent == []


