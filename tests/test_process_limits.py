"""The limits that protect the process (issue 14), against a real ``taskgate serve``:
header size (431), header and body read timeouts (slowloris), concurrent requests (503),
and the upstream response size (502, recorded, memory bounded).

Raw sockets for the slow and huge clients; every wait is bounded. Each test prints what it measured.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Iterator

import httpx
import orjson
import pytest

from tests.conftest import RedisServer, base_config, free_port, model_entry

MSGS = [{"role": "user", "content": "hi"}]


def chat_body(model: str = "big", **extra: Any) -> bytes:
    return orjson.dumps({"model": model, "messages": MSGS, **extra})


def connect(url: str, timeout: float = 5) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    return sock


def read_response(sock: socket.socket, limit: float = 5) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response off a raw socket (the gateway closes after these answers)."""
    sock.settimeout(limit)
    data = b""
    deadline = time.monotonic() + limit
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0]:
        return 0, {}, b""
    headers = dict((k.lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
    chunked = headers.get("transfer-encoding") == "chunked"
    want = int(headers.get("content-length", "0"))
    while (not body.endswith(b"0\r\n\r\n") if chunked else len(body) < want) and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def healthz_latency(url: str) -> float:
    """A new connection and ``GET /healthz`` on a raw socket (an httpx client costs ~0.1-0.3 s to build)."""
    t0 = time.monotonic()
    sock = connect(url)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
    finally:
        sock.close()
    return time.monotonic() - t0


# --- a lazy huge upstream ---------------------------------------------------------------------

class HugeUpstream:
    """Answers every POST with ``size`` bytes, 1 MiB at a time from one buffer (nothing allocated
    per byte), until the gateway hangs up: a JSON body that never ends, or one SSE line."""

    CHUNK = b"a" * (1 << 20)

    def __init__(self, size: int = 200 << 20) -> None:
        self.size = size
        self.sent: list[int] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        sent = 0
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            stream = b'"stream":true' in body or b'"stream": true' in body
            if stream:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
                             b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
                             b'[{"index":0,"delta":{"role":"assistant","content":"')
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                             b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
                             b'"message":{"role":"assistant","content":"')
            while sent < self.size:
                conn.sendall(self.CHUNK)
                sent += len(self.CHUNK)
        except OSError:
            pass
        finally:
            self.sent.append(sent)
            conn.close()

    def stop(self) -> None:
        self.stopped = True
        self.sock.close()


@pytest.fixture
def huge() -> Iterator[HugeUpstream]:
    up = HugeUpstream()
    yield up
    up.stop()


def config(redis: RedisServer, port: int, **server: Any) -> dict[str, Any]:
    params = {"model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{port}/v1", "api_key": "sk-x",
              "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002, "max_retries": 0}
    return base_config(redis.url, [model_entry("big", params, id="big")], server=server,
                       routing={"retries": {"max": 0}})


def rss_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


# --- header size -------------------------------------------------------------------------------

def test_a_huge_header_is_431_before_it_is_buffered(redis_server: RedisServer, gateway_factory: Any) -> None:
    gw = gateway_factory(config(redis_server, free_port()))
    pid = gw.proc.pid
    before = rss_kb(pid, "VmRSS")
    for size in (100 * 1024, 16 << 20):  # one header over 64 KiB, and the tester's 16 MB
        sock = connect(gw.url)
        try:
            t0 = time.monotonic()
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
            try:
                for _ in range(size // 65536):
                    sock.sendall(b"a" * 65536)
                sock.sendall(b"\r\n\r\n")
            except OSError:
                pass  # the gateway answered and closed while we were still sending
            status, headers, body = read_response(sock)
        finally:
            sock.close()
        took = time.monotonic() - t0
        print(f"\n{size} byte header -> {status} in {took:.2f}s")
        assert status == 431 and headers["content-type"] == "application/json"
        assert orjson.loads(body)["error"]["code"] == "request_header_fields_too_large"
    grew = rss_kb(pid, "VmHWM") - before
    print(f"peak RSS growth {grew / 1024:.1f} MB")
    assert grew < 16 * 1024, "the header was not buffered"
    # many small headers that add up are refused the same way; a normal request still works
    sock = connect(gw.url)
    try:
        many = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert read_response(sock)[0] == 431
    finally:
        sock.close()
    assert httpx.get(f"{gw.url}/v1/models", timeout=5).status_code == 200


def test_four_64mb_tokens_do_not_stall_healthz(redis_server: RedisServer, gateway_factory: Any) -> None:
    gw = gateway_factory(config(redis_server, free_port()))
    idle = sorted(healthz_latency(gw.url) for _ in range(5))[2]
    stop = threading.Event()
    outcomes: list[str] = []

    def send_token() -> None:
        try:
            sock = connect(gw.url, timeout=10)
        except OSError as exc:
            outcomes.append(f"connect {exc}")
            return
        try:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
            chunk = b"t" * (1 << 20)
            for _ in range(64):
                if stop.is_set():
                    break
                sock.sendall(chunk)
            outcomes.append("sent all")
        except OSError:
            outcomes.append("cut by the gateway")
        finally:
            sock.close()

    threads = [threading.Thread(target=send_token, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    latencies = [healthz_latency(gw.url) for _ in range(20)]
    stop.set()
    for t in threads:
        t.join(timeout=15)
    print(f"\n/healthz during 4 x 64 MB tokens: max {max(latencies) * 1000:.0f} ms, median "
          f"{sorted(latencies)[10] * 1000:.0f} ms (idle: {idle * 1000:.0f} ms); senders: {outcomes}")
    assert max(latencies) < 0.5
    assert outcomes.count("cut by the gateway") == 4


# --- slowloris ---------------------------------------------------------------------------------

def test_slow_headers_and_bodies_are_closed(redis_server: RedisServer, gateway_factory: Any) -> None:
    limit = 1.5
    gw = gateway_factory(config(redis_server, free_port(), header_timeout_s=limit, body_timeout_s=limit))
    slow_headers = [connect(gw.url) for _ in range(50)]
    slow_bodies = [connect(gw.url) for _ in range(20)]
    body = chat_body()
    for sock in slow_bodies:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
    request = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    t0 = time.monotonic()
    closed: dict[int, tuple[float, bytes]] = {}
    socks = slow_headers + slow_bodies
    for sock in socks:
        sock.setblocking(False)
    i = 0
    normal_ok = 0
    while len(closed) < len(socks) and time.monotonic() - t0 < limit + 5:
        for n, sock in enumerate(socks):
            if n in closed:
                continue
            try:
                data = sock.recv(4096)
                closed[n] = (time.monotonic() - t0, data)  # b"" (closed) or the 408 answer
                continue
            except BlockingIOError:
                pass
            except OSError:
                closed[n] = (time.monotonic() - t0, b"")
                continue
            try:  # one byte a second, each
                sock.send(request[i % len(request):i % len(request) + 1] if n < 50 else body[i % len(body):][:1])
            except OSError:
                closed[n] = (time.monotonic() - t0, b"")
        if i % 2 == 0:
            normal_ok += healthz_latency(gw.url) < 1
        i += 1
        time.sleep(0.5)
    for sock in socks:
        sock.close()
    times = [t for t, _ in closed.values()]
    answered = sum(data.startswith(b"HTTP/1.1 408") for _, data in closed.values())
    print(f"\n{len(closed)}/{len(socks)} slow connections closed, the last after {max(times or [0]):.1f}s "
          f"(limit {limit}s); {answered} answered 408; {normal_ok} normal requests answered meanwhile")
    assert len(closed) == len(socks) and max(times) < limit + 2.5
    assert answered == len(socks)
    assert normal_ok >= 2
    assert httpx.post(f"{gw.url}/v1/route/explain", content=chat_body(), timeout=5).status_code == 200


# --- concurrency -------------------------------------------------------------------------------

def test_concurrent_requests_beyond_the_limit_get_503(redis_server: RedisServer, gateway_factory: Any) -> None:
    gw = gateway_factory(config(redis_server, free_port(), max_concurrent_requests=2, body_timeout_s=30))
    body = chat_body()
    held = [connect(gw.url) for _ in range(2)]
    try:
        for sock in held:  # in the app, waiting for the rest of their bodies
            sock.sendall(b"POST /v1/route/explain HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body[:5]))
        time.sleep(0.3)
        resp = httpx.post(f"{gw.url}/v1/chat/completions", content=body, timeout=5)
        print(f"\n3rd request at the limit of 2: {resp.status_code} retry-after={resp.headers.get('retry-after')}")
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert resp.json()["error"]["code"] == "overloaded"
        anthropic = httpx.post(f"{gw.url}/v1/messages", content=body, timeout=5)  # Anthropic's "overloaded"
        assert anthropic.status_code == 529 and anthropic.json()["type"] == "error"
        assert httpx.get(f"{gw.url}/v1/models", timeout=5).status_code == 503
        assert httpx.get(f"{gw.url}/healthz", timeout=5).status_code == 200  # exempt
        assert httpx.get(f"{gw.url}/readyz", timeout=5).status_code == 200
        for sock in held:
            sock.sendall(body[5:])
            assert read_response(sock)[0] == 200
    finally:
        for sock in held:
            sock.close()
    assert httpx.post(f"{gw.url}/v1/route/explain", content=body, timeout=5).status_code == 200


# --- upstream response size ----------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_a_200mb_upstream_answer_is_cut(redis_server: RedisServer, gateway_factory: Any, huge: HugeUpstream,
                                        stream: bool) -> None:
    limit = 8 << 20
    gw = gateway_factory(config(redis_server, huge.port, max_upstream_response_bytes=limit,
                                max_upstream_event_bytes=limit))
    pid = gw.proc.pid
    # warm up what a cut attempt first loads (the tokenizer that estimates it), then reset the peak
    httpx.post(f"{gw.url}/v1/chat/completions", content=chat_body(stream=stream), timeout=30)
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = rss_kb(pid, "VmRSS")
    task = f"huge-{'s' if stream else 'u'}"
    t0 = time.monotonic()
    resp = httpx.post(f"{gw.url}/v1/chat/completions", content=chat_body(stream=stream),
                      headers={"X-Task-Id": task, "content-type": "application/json"}, timeout=30)
    took = time.monotonic() - t0
    grew = rss_kb(pid, "VmHWM") - before
    print(f"\n{'stream' if stream else 'unary'}: {resp.status_code} in {took:.2f}s; upstream sent "
          f"{huge.sent} bytes; peak RSS +{grew / 1024:.1f} MB")
    assert grew < 64 * 1024
    # a stream cut before its first event is answered like a unary one (after it: an in-band error)
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "upstream_response_too_large"
    deadline = time.monotonic() + 10
    while True:
        record = httpx.get(f"{gw.url}/v1/tasks/{task}", timeout=5)
        if record.status_code == 200 and record.json().get("attempts"):
            break
        assert time.monotonic() < deadline, record.text
        time.sleep(0.1)
    t = record.json()
    print(f"recorded: attempts={t['attempts']} failed={t['failed_attempts']} input={t['input_tokens']} "
          f"estimated={t['estimated_attempts']} cost={t['cost_usd']}")
    assert t["attempts"] == 1 and t["failed_attempts"] == 1 and t["estimated_attempts"] == 1
    assert t["input_tokens"] > 0


def test_keep_alive_and_split_requests_within_the_limits_are_served(redis_server: RedisServer,
                                                                    gateway_factory: Any) -> None:
    """The timeouts run from a request's first byte, not across idle keep-alive gaps; a request
    that arrives in pieces within them is served."""
    gw = gateway_factory(config(redis_server, free_port(), header_timeout_s=1, body_timeout_s=1))
    sock = connect(gw.url)
    try:
        body = chat_body()
        request = (b"POST /v1/route/explain HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        for gap in (0, 1.5, 1.5):  # idle longer than either timeout between requests (keep-alive is 5 s)
            time.sleep(gap)
            sock.sendall(request)
            assert read_response(sock)[0] == 200
        for cut in (10, len(request) - 5):  # in two pieces, 0.5 s apart (headers, then body)
            sock.sendall(request[:cut])
            time.sleep(0.5)
            sock.sendall(request[cut:])
            assert read_response(sock)[0] == 200
    finally:
        sock.close()
