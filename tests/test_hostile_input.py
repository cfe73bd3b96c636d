"""The hostile-input table (issue 14): every input a tester used to crash or stall a handler,
plus invalid UTF-8, deep JSON, NaN / infinite / huge numbers in every numeric field, CR/LF in
headers and wrong JSON types, each sent to each endpoint it concerns.

Every case must be answered with a 4xx in the endpoint's error shape (OpenAI's, or
Anthropic's on ``/v1/messages``): never a 5xx, never a plain-text body. The table runs
in-process (tests/inproc.py: the real ASGI app, a real Redis, a scripted upstream that
answers 400 to anything forwarded); a handful of cases run through a real ``taskgate serve``.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import socket
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from gateway.upstream.transport import Reply
from gateway.snapshot import Timeouts
from providers.base import UpstreamRequest
from tests.conftest import RedisServer
from tests.inproc import Harness
from tests.scripted import ScriptedTransport, Step

_dbs = itertools.count(400)

ADMIN = "Bearer admin-key-hostile"
CONFIG = """
model_list:
  - model_name: m
    litellm_params: {model: openai/gpt-a, api_base: "http://a/v1", api_key: key-a,
                     input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
    model_info: {id: a}
  - model_name: e
    litellm_params: {model: openai/text-embedding-3-small, api_base: "http://a/v1", api_key: key-a}
    model_info: {id: emb, mode: embedding}
store: {url: REDIS_URL}
auth:
  keys:
    - {key: admin-key-hostile, tenant: default, admin: true}
budgets:
  tenants:
    default: {daily_usd: 100}
compliance:
  default_class: internal
  data_classes:
    - {name: public}
    - {name: internal}
    - {name: restricted, open_weight: true, kinds: [ollama_chat]}
"""
UPSTREAM_400 = Step(400, orjson.dumps({"error": {"message": "upstream refuses", "type": "invalid_request_error",
                                                 "param": None, "code": None}}))


class RefusingUpstream(ScriptedTransport):
    """Whatever the gateway forwards, the upstream refuses as a client error (what OpenAI does
    with a temperature of 1e308): the gateway must relay that as a 4xx, not fail itself."""

    async def send(self, req: UpstreamRequest, timeouts: Timeouts) -> Reply:
        self.add(UPSTREAM_400)
        return await super().send(req, timeouts)

    def stream(self, req: UpstreamRequest, timeouts: Timeouts) -> Any:
        self.add(UPSTREAM_400)
        return super().stream(req, timeouts)


async def request(h: Harness, method: str, path: str, body: bytes = b"", query: bytes = b"",
                  headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request through the ASGI app, with raw bytes for everything (a server would pass these)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
             "headers": [(b"content-type", b"application/json"), *(headers if headers is not None
                                                                   else [(b"authorization", ADMIN.encode())])]}
    sent = False
    out: dict[str, Any] = {"chunks": []}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode("latin-1"): v.decode("latin-1") for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            out["chunks"].append(message.get("body", b""))

    await asyncio.wait_for(h.app(scope, receive, send), 20)
    return out["status"], out["headers"], b"".join(out["chunks"])


def assert_shaped_4xx(path: str, status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert 400 <= status < 500, f"{path}: {status} {body[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json"), f"{path}: {headers} {body[:200]!r}"
    data = orjson.loads(body)
    if path.startswith("/v1/messages"):
        assert data["type"] == "error" and isinstance(data["error"]["message"], str) and data["error"]["type"], data
    else:
        err = data["error"]
        assert set(err) >= {"message", "type", "param", "code"} and isinstance(err["message"], str), data
    return data


# --- the table --------------------------------------------------------------------------------

MSGS = [{"role": "user", "content": "hi"}]
HUGE = [1e308, -1e308, 10**30, -(10**30), 2**63, 1.5, "1", True, [], {}]  # 1e400 / NaN are not JSON: see RAW
NUMERIC = ["temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "seed", "presence_penalty",
           "frequency_penalty", "top_logprobs", "logprobs"]
WRONG_TYPES: list[tuple[str, Any]] = [
    *[("stream", v) for v in ("yes", 1, 0, [], {}, "true")],
    *[("stream_options", v) for v in ("yes", [1], 1, True, {"include_usage": "yes"}, {"include_usage": 1})],
    *[("messages", v) for v in ("hi", 1, None, [1], [None], [{"role": 1, "content": "x"}], {}, [])],
    *[("tools", v) for v in ("x", 1, [1], {}, [{"type": "function"}], [{"type": "function", "function": 1}])],
    *[("model", v) for v in (1, None, [], {}, "")],
    *[("n", v) for v in (0, -1)],
    *[("max_tokens", v) for v in (-1, 10**12)],
    *[(field, v) for field in NUMERIC for v in HUGE],
]
RAW_BODIES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not json", b"hello"),
    ("array", b"[1, 2]"),
    ("invalid utf-8", b'{"model": "m\xff\xfe", "messages": []}'),
    ("lone surrogate", b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}'),
    ("deep array", b"[" * 10_000 + b"]" * 10_000),
    ("deep object", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
    ("deep inside messages", b'{"model": "m", "messages": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
    ("NaN", b'{"model": "m", "messages": [], "temperature": NaN}'),
    ("Infinity", b'{"model": "m", "messages": [], "max_tokens": Infinity}'),
    ("1e400", b'{"model": "m", "messages": [], "top_p": 1e400}'),
    ("5000 digits", b'{"model": "m", "messages": [], "seed": ' + b"9" * 5000 + b"}"),
]
PROXY_PATHS = ["/v1/chat/completions", "/v1/route/explain", "/v1/responses", "/v1/messages", "/v1/embeddings"]

BAD_BUDGETS = ["1e999999", "9" * 5000, "nan", "NaN", "inf", "-inf", "Infinity", "-1", "0", "abc", "1e20", " ",
               "0x10", "1_000", "100, 50", "1" * 33]
HEADER_CASES: list[tuple[str, bytes]] = [
    *[("x-task-budget-usd", b.encode()) for b in BAD_BUDGETS],
    ("x-task-id", b"a\r\nset-cookie: x=1"), ("x-task-id", b"a\nb"), ("x-task-id", b"\xff\xfe"),
    ("x-task-id", b"a" * 10_000), ("x-task-type", b"t\r\nx: y"), ("x-task-type", b"\xc3\x28"),
    ("x-data-class", b"restricted\r\nx: y"), ("x-data-class", b"\xff"), ("x-data-class", b"restricted, public"),
    ("authorization", b"Bearer \xff\xfe"), ("authorization", b"Bearer admin-key-hostile\r\nx: y"),
    ("x-api-key", b"\xff"),
]
QUERY_CASES: list[tuple[str, bytes]] = [
    *[(path, f"{name}={value}".encode())
      for path, names in (("/v1/tasks", ("since", "until", "before")), ("/v1/reports/tasks", ("since", "until")),
                          ("/v1/audit", ("before",)))
      for name in names
      for value in ("nan", "NaN", "inf", "-inf", "Infinity", "1e20", "6.6e16", "-6.6e16", "null", "abc", "1e999",
                    "9" * 400, "", "-1")],
    *[(path, f"limit={value}".encode()) for path in ("/v1/tasks", "/v1/audit")
      for value in ("0", "-1", "1e9", "nan", "abc", "9" * 400, "1.5")],
    ("/v1/tasks", b"status=weird"), ("/v1/tasks", b"since=%ff"), ("/v1/tasks", b"task_type=%ff%fe"),
    ("/v1/tasks", b"since=10&until=5&limit=2"), ("/v1/reports/tasks", b"since=10&until=5"),
]


@pytest.fixture(scope="module")
def harness_loop() -> Any:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def gw(redis_server: RedisServer, harness_loop: asyncio.AbstractEventLoop) -> Any:
    h = Harness(CONFIG, f"redis://127.0.0.1:{redis_server.port}/{next(_dbs)}")
    h.transport = RefusingUpstream()
    harness_loop.run_until_complete(h.__aenter__())
    yield h
    harness_loop.run_until_complete(h.__aexit__())


def run(loop: asyncio.AbstractEventLoop, gw: Harness, *args: Any, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    return loop.run_until_complete(request(gw, *args, **kw))


def body_for(path: str, field: str, value: Any) -> bytes:
    base: dict[str, Any] = {"model": "e", "input": "hi"} if path == "/v1/embeddings" else \
        {"model": "m", "input": "hi"} if path == "/v1/responses" else \
        {"model": "m", "messages": MSGS, "max_tokens": 10}
    if isinstance(value, int) and abs(value) >= 2**63:  # orjson writes no integer that big: by hand
        return orjson.dumps(base)[:-1] + f',"{field}":{value}}}'.encode()
    return orjson.dumps({**base, field: value})


@pytest.mark.parametrize("path", PROXY_PATHS)
@pytest.mark.parametrize(("field", "value"), WRONG_TYPES, ids=[f"{f}={v!r}"[:40] for f, v in WRONG_TYPES])
def test_wrong_types_and_huge_numbers(gw: Harness, harness_loop: Any, path: str, field: str, value: Any) -> None:
    status, headers, body = run(harness_loop, gw, "POST", path, body_for(path, field, value))
    if status < 300:  # a field the gateway does not act on, which the (refusing) upstream did not see
        return
    assert_shaped_4xx(path, status, headers, body)


@pytest.mark.parametrize("path", PROXY_PATHS + ["/v1/messages/count_tokens", "/v1/tasks/t-1/complete"])
@pytest.mark.parametrize(("name", "raw"), RAW_BODIES, ids=[c[0] for c in RAW_BODIES])
def test_raw_bodies(gw: Harness, harness_loop: Any, path: str, name: str, raw: bytes) -> None:
    status, headers, body = run(harness_loop, gw, "POST", path, raw)
    assert_shaped_4xx(path, status, headers, body)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/route/explain", "/v1/messages", "/v1/responses"])
@pytest.mark.parametrize(("name", "value"), HEADER_CASES, ids=[f"{n}={v[:20]!r}" for n, v in HEADER_CASES])
def test_hostile_headers(gw: Harness, harness_loop: Any, path: str, name: str, value: bytes) -> None:
    hdrs = [(name.encode(), value)] if name in ("authorization", "x-api-key") else \
        [(b"authorization", ADMIN.encode()), (name.encode(), value)]
    body = orjson.dumps({"model": "m", "input": "hi"} if path == "/v1/responses"
                        else {"model": "m", "messages": MSGS, "max_tokens": 10})
    sent = len(gw.transport.sent)
    status, headers, out = run(harness_loop, gw, "POST", path, body, headers=hdrs)
    if path == "/v1/route/explain" and status == 200:  # explain answers a denial as its explanation
        assert orjson.loads(out)["chosen"] is None, out
    else:
        assert_shaped_4xx(path, status, headers, out)
    assert len(gw.transport.sent) == sent, "refused before any upstream call"
    assert b"\r" not in b"".join(v.encode("latin-1") for v in headers.values())


@pytest.mark.parametrize(("path", "query"), QUERY_CASES, ids=[f"{p}?{q[:24]!r}" for p, q in QUERY_CASES])
def test_hostile_query_parameters(gw: Harness, harness_loop: Any, path: str, query: bytes) -> None:
    status, headers, body = run(harness_loop, gw, "GET", path, query=query)
    if path == "/v1/tasks" and query in (b"since=10&until=5&limit=2", b"task_type=%ff%fe") and status == 200:
        return  # an empty window, or a task type nobody used, is a valid question
    assert_shaped_4xx(path, status, headers, body)


@pytest.mark.parametrize("path", ["/v1/tasks/t-1/complete"])
def test_complete_takes_only_an_outcome_object(gw: Harness, harness_loop: Any, path: str) -> None:
    for raw in (b'{"outcome": 1}', b'{"outcome": "\\ud800"}', b'"succeeded"', b"null", b'{"outcome": null}',
                b'{"outcome": "' + b"x" * (11 << 20) + b'"}'):  # over server.max_body_bytes: 413
        status, headers, body = run(harness_loop, gw, "POST", path, raw)
        assert_shaped_4xx(path, status, headers, body)


ACTED_ON: list[tuple[str, Any]] = [
    *[("stream", v) for v in ("yes", 1, [], {})],
    *[("stream_options", v) for v in ("yes", [1], 1, True, {"include_usage": "yes"})],
    *[("n", v) for v in (0, -1, 1.5, "2", True, 10**30, 1e308, 129)],
    *[(f, v) for f in ("max_tokens", "max_completion_tokens") for v in (-1, 1.5, "10", True, 10**12, 1e308, 10**30)],
]


@pytest.mark.parametrize(("field", "value"), ACTED_ON, ids=[f"{f}={v!r}"[:40] for f, v in ACTED_ON])
def test_fields_the_gateway_acts_on_are_refused_by_the_gateway(gw: Harness, harness_loop: Any, field: str,
                                                              value: Any) -> None:
    """Not forwarded for the upstream to judge: the gateway reads these to stream, reserve and bill."""
    sent = len(gw.transport.sent)
    status, headers, body = run(harness_loop, gw, "POST", "/v1/chat/completions",
                                body_for("/v1/chat/completions", field, value))
    data = assert_shaped_4xx("/v1/chat/completions", status, headers, body)
    assert status == 400 and data["error"]["param"].split(".")[0] == field, data
    assert len(gw.transport.sent) == sent


# --- repeated headers, through the ASGI app (tests/test_repeated_headers.py: through a real server) ---

REPEATED: list[tuple[str, tuple[bytes, bytes], int]] = [
    ("x-data-class", (b"restricted", b"public"), 400),
    ("x-data-class", (b"public", b"restricted"), 400),
    ("x-data-class", (b"public", b"public"), 400),
    ("x-task-id", (b"task-a", b"task-b"), 400),
    ("x-task-type", (b"triage", b"other"), 400),
    ("x-task-budget-usd", (b"100", b"50"), 400),
    ("authorization", (b"Bearer admin-key-hostile", b"Bearer nope-nope-nope"), 401),
    ("authorization", (ADMIN.encode(), ADMIN.encode()), 401),
    ("x-api-key", (b"admin-key-hostile", b"admin-key-hostile"), 401),
]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings"])
@pytest.mark.parametrize(("name", "values", "expected"), REPEATED, ids=[f"{n}={v}" for n, v, _ in REPEATED])
def test_a_repeated_header_is_refused_never_last_wins(gw: Harness, harness_loop: Any, path: str, name: str,
                                                      values: tuple[bytes, bytes], expected: int) -> None:
    auth = [] if name in ("authorization", "x-api-key") else [(b"authorization", ADMIN.encode())]
    hdrs = [*auth, (name.encode(), values[0]), (name.encode(), values[1])]
    body = body_for(path, "max_tokens", 10)
    sent = len(gw.transport.sent)
    status, headers, out = run(harness_loop, gw, "POST", path, body, headers=hdrs)
    assert_shaped_4xx(path, status, headers, out)
    assert status == expected, out
    assert len(gw.transport.sent) == sent, "refused before any upstream call"


# --- a handful through a real ``taskgate serve`` (the server's own parsing is in the path) ---------

REAL_CASES: list[tuple[str, str, bytes, list[tuple[str, str]]]] = [
    ("POST", "/v1/chat/completions", b'{"model": "m", "messages": [], "stream_options": "yes"}', []),
    ("POST", "/v1/chat/completions", b'{"model": "m", "messages": [], "stream": "yes"}', []),
    ("POST", "/v1/chat/completions", orjson.dumps({"model": "m", "messages": MSGS}),
     [("X-Task-Budget-USD", "1e999999")]),
    ("POST", "/v1/chat/completions", orjson.dumps({"model": "m", "messages": MSGS}),
     [("X-Task-Budget-USD", "9" * 5000)]),
    ("POST", "/v1/chat/completions", b'{"model": "m\xff"}', []),
    ("POST", "/v1/messages", b"[" * 10_000 + b"]" * 10_000, []),
    ("POST", "/v1/tasks/t-1/complete", b"[" * 10_000 + b"]" * 10_000, []),
    ("GET", "/v1/tasks?since=nan", b"", []),
    ("GET", "/v1/reports/tasks?until=1e20", b"", []),
    ("GET", "/v1/reports/tasks?until=6.6e16", b"", []),
    ("GET", "/v1/audit?before=null", b"", []),
]


def test_a_handful_through_a_real_server(redis_server: RedisServer, gateway_factory: Any) -> None:
    from tests.conftest import base_config, model_entry

    params = {"model": "openai/gpt-a", "api_base": "http://127.0.0.1:1/v1", "api_key": "key-a"}
    gw = gateway_factory(base_config(redis_server.url, [model_entry("m", params, id="a")]))
    parts = urlsplit(gw.url)
    for method, path, body, extra in REAL_CASES:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.putrequest(method, path)
            for name, value in [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra]:
                conn.putheader(name, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            out = resp.read()
            assert_shaped_4xx(path, resp.status, {k.lower(): v for k, v in resp.getheaders()}, out)
        finally:
            conn.close()
    # a header value with invalid UTF-8, and one the server itself refuses (a bare CR)
    for raw in (b"X-Task-Id: \xff\xfe\r\n", b"X-Task-Id: a\rb\r\n"):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        try:
            body = orjson.dumps({"model": "m", "messages": MSGS})
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + raw + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            answer = sock.recv(65536)
        finally:
            sock.close()
        status = int(answer.split(b" ", 2)[1])
        first_line = answer.split(b"\r\n", 1)[0]
        print(f"\n{raw!r} -> {first_line!r}")
        assert 400 <= status < 500 and b"content-type: application/json" in answer.lower()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/tasks", "/v1/models"])
def test_headers_over_the_limit_are_431_under_any_server(gw: Harness, harness_loop: Any, path: str) -> None:
    """The ASGI app checks too (in-process, or another server than ``taskgate serve``), before auth."""
    for hdrs in ([(b"authorization", b"Bearer " + b"k" * 70_000)],
                 [(b"x-h%d" % i, b"v" * 1000) for i in range(80)]):
        method = "GET" if path in ("/v1/tasks", "/v1/models") else "POST"
        status, headers, body = run(harness_loop, gw, method, path, body_for(path, "n", 1), headers=hdrs)
        assert status == 431, body
        assert_shaped_4xx(path, status, headers, body)


PATH_CASES = [("GET", "/v1/tasks/" + "a" * 200), ("GET", "/v1/tasks/a\ufffd"), ("GET", "/v1/tasks/%00"),
              ("POST", "/v1/tasks/" + "a" * 200 + "/complete"), ("GET", "/v1/responses/\ufffd"),
              ("DELETE", "/v1/responses/" + "r" * 5000), ("GET", "/v1/responses/x%0d%0ay"),
              ("GET", "/v1/models/" + "m" * 5000), ("PATCH", "/v1/chat/completions"), ("GET", "/v1/nope")]


@pytest.mark.parametrize(("method", "path"), PATH_CASES, ids=[f"{m} {p[:30]!r}" for m, p in PATH_CASES])
def test_hostile_paths(gw: Harness, harness_loop: Any, method: str, path: str) -> None:
    status, headers, body = run(harness_loop, gw, method, path, b'{"outcome": "succeeded"}')
    assert_shaped_4xx(path, status, headers, body)
