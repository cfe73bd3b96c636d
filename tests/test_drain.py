"""Graceful drain and a bounded stop (issue 10, defects 2 and 9), with real ``taskgate serve``
processes, the strict OpenAI fake streaming slowly, and real Redis servers.

* SIGTERM with streams longer than uvicorn's old 10 s timeout: every stream completes, and
  every one is in the ledger exactly as the fake billed it.
* SIGTERM with a drain shorter than the streams: each stream is cut at the deadline with an
  error event, and recorded with its tokens so far; no traceback is logged.
* SIGTERM while the store is unreachable (killed, or frozen): the process exits within the
  drain bound plus the stop bound, and the spool holds every pending record.
* Two processes with the same embedded ``store.path``: the second is refused, naming the owner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.edge.asgi import STOP_BOUND_S
from tests.conftest import Fakes, RedisServer, base_config, model_entry

PROMPT = [{"role": "user", "content": "count these five words"}]
STREAM_EVENTS = 11  # role, 7 words, finish, usage, [DONE]


class Streams:
    """``count`` streamed requests in threads; what each one saw."""

    def __init__(self, url: str, count: int, task_id: str) -> None:
        self.results: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._one, args=(url, task_id), daemon=True) for _ in range(count)]
        for t in self.threads:
            t.start()

    def _one(self, url: str, task_id: str) -> None:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        out: dict[str, Any] = {"text": "", "usage": None, "error": None}
        try:
            for chunk in client.chat.completions.create(model="chat", messages=PROMPT, stream=True,
                                                        stream_options={"include_usage": True},
                                                        extra_headers={"X-Task-Id": task_id}):
                if chunk.choices and chunk.choices[0].delta.content:
                    out["text"] += chunk.choices[0].delta.content
                if chunk.usage is not None:
                    out["usage"] = chunk.usage
        except Exception as exc:  # an in-band error event, or a cut connection
            out["error"] = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.results.append(out)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "a client never finished"


def _wait_streaming(fakes: Fakes, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while len(fakes.openai.requests) < count:
        assert time.monotonic() < deadline, "the streams never reached the upstream"
        time.sleep(0.05)
    time.sleep(0.5)  # every stream has sent its first events


def _sigterm_and_wait(gw: Any, bound: float) -> tuple[int, float]:
    proc = gw.proc
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(bound)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the gateway did not exit within {bound:.0f}s of SIGTERM:\n{gw.process.log_tail()}")
    return rc, time.monotonic() - t0


def _no_traceback(log: str) -> None:
    assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
    assert "Exception in ASGI application" not in log and "returned without completing" not in log, log[-3000:]


def _task(url: str, task_id: str) -> dict[str, Any]:
    return httpx.get(f"{url}/v1/tasks/{task_id}", timeout=10).json()


def test_sigterm_lets_streams_longer_than_the_old_timeout_finish(clean_fakes: Fakes, redis_server: RedisServer,
                                                                  gateway_factory: Any) -> None:
    fakes = clean_fakes
    fakes.openai.chunk_delay = 1.2  # ~13 s per stream: longer than uvicorn's old 10 s
    cfg = base_config(redis_server.url, [model_entry("chat", fakes.params("openai"), id="oa")],
                      server={"drain_timeout_s": 40})
    gw = gateway_factory(cfg)
    n = 40  # the tester's figure: 40 streams, each longer than the old timeout
    streams = Streams(gw.url, n, "drain-long")
    _wait_streaming(fakes, n)
    rc, took = _sigterm_and_wait(gw, 40 + STOP_BOUND_S)
    refused_after = None
    with pytest.raises(httpx.ConnectError):  # the listener closed at once
        refused_after = httpx.get(f"{gw.url}/healthz", timeout=2)
    streams.join(10)
    done = [r for r in streams.results if r["error"] is None and r["usage"] is not None]
    print(f"\nSIGTERM with {n} streams of ~{STREAM_EVENTS * 1.2:.0f}s: exit {rc} after {took:.1f}s; "
          f"{len(done)}/{n} streams completed; new connection refused: {refused_after is None}")
    assert rc in (0, -signal.SIGTERM), gw.process.log_tail()
    assert len(done) == n, streams.results
    _no_traceback(gw.log())
    billed = fakes.openai.billed.as_dict()
    gw2 = gateway_factory(cfg)
    t = _task(gw2.url, "drain-long")
    print(f"ledger: requests={t['requests']} in={t['input_tokens']} out={t['output_tokens']}; billed {billed}")
    assert (t["requests"], t["attempts"], t["failed_attempts"]) == (n, n, 0)
    assert (t["input_tokens"], t["output_tokens"]) == (billed["input_tokens"], billed["output_tokens"])


@pytest.mark.parametrize("workers", [1, 2])
def test_streams_cut_at_the_drain_deadline_are_recorded(clean_fakes: Fakes, redis_server: RedisServer,
                                                        gateway_factory: Any, workers: int) -> None:
    fakes = clean_fakes
    fakes.openai.chunk_delay = 1.2
    drain = 3
    cfg = base_config(redis_server.url, [model_entry("chat", fakes.params("openai"), id="oa")],
                      server={"drain_timeout_s": drain})
    gw = gateway_factory(cfg, workers=workers)
    n = 6
    streams = Streams(gw.url, n, "drain-cut")
    _wait_streaming(fakes, n)
    rc, took = _sigterm_and_wait(gw, drain + STOP_BOUND_S)
    streams.join(10)
    cut = [r for r in streams.results if r["error"] is not None]
    print(f"\n{workers} worker(s): SIGTERM, drain {drain}s, {n} streams of ~13s: exit {rc} after {took:.1f}s; {len(cut)} cut; "
          f"first error: {cut[0]['error'] if cut else None}")
    assert rc in (0, -signal.SIGTERM), gw.process.log_tail()
    assert took < drain + 5, "the stop is bounded by the drain timeout"
    assert len(cut) == n and all("shutting down" in r["error"] for r in cut), streams.results
    assert all(r["text"] for r in cut), "each client had part of its answer"
    _no_traceback(gw.log())
    gw2 = gateway_factory(cfg)
    deadline = time.monotonic() + 10
    while (t := _task(gw2.url, "drain-cut")).get("attempts", 0) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    while fakes.openai.billed.requests < n and time.monotonic() < deadline:  # it bills a cut stream at its next chunk
        time.sleep(0.2)
    billed = fakes.openai.billed.as_dict()
    print(f"ledger: requests={t['requests']} estimated={t['estimated_attempts']} in={t['input_tokens']} "
          f"out={t['output_tokens']} cost={t['cost_usd']}; billed {billed}")
    assert (t["requests"], t["attempts"]) == (n, n), "every cut stream is recorded once"
    assert t["estimated_attempts"] == n and t["output_tokens"] > 0, "with its tokens so far, marked estimated"
    # the estimate (tokenizer, plus per-message overhead) is no lower than what the fake billed
    assert t["input_tokens"] >= billed["input_tokens"] and t["output_tokens"] >= billed["output_tokens"]
    assert t["waste_by_reason"]["cancelled"] > 0


def test_a_unary_request_cut_at_the_drain_deadline_gets_503_and_is_recorded(
        clean_fakes: Fakes, redis_server: RedisServer, gateway_factory: Any) -> None:
    fakes = clean_fakes
    fakes.openai.delay = 8.0  # a slow provider: no answer before the drain runs out
    drain = 2
    cfg = base_config(redis_server.url, [model_entry("chat", fakes.params("openai"), id="oa")],
                      server={"drain_timeout_s": drain})
    gw = gateway_factory(cfg)
    seen: dict[str, Any] = {}

    def one() -> None:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=30)
        try:
            client.chat.completions.create(model="chat", messages=PROMPT, extra_headers={"X-Task-Id": "drain-unary"})
        except openai.APIStatusError as exc:
            seen["status"], seen["body"] = exc.status_code, exc.body

    thread = threading.Thread(target=one, daemon=True)
    thread.start()
    _wait_streaming(fakes, 1)
    rc, took = _sigterm_and_wait(gw, drain + STOP_BOUND_S)
    thread.join(10)
    print(f"\nunary cut at the {drain}s drain deadline: exit {rc} after {took:.1f}s; client got {seen}")
    assert rc in (0, -signal.SIGTERM) and took < drain + 5
    assert seen.get("status") == 503 and seen["body"]["code"] == "shutting_down"
    _no_traceback(gw.log())
    gw2 = gateway_factory(cfg)
    t = _task(gw2.url, "drain-unary")
    assert (t["attempts"], t["estimated_attempts"]) == (1, 1) and t["input_tokens"] > 0, t


@pytest.mark.parametrize("outage", ["killed", "frozen"])
def test_sigterm_while_the_store_is_unreachable_exits_in_bound_and_spools(clean_fakes: Fakes, gateway_factory: Any,
                                                                          tmp_path: Path, outage: str) -> None:
    fakes = clean_fakes
    fakes.openai.chunk_delay = 0.3  # ~3 s streams, inside the drain
    store = RedisServer()
    store.start()
    spool = tmp_path / f"spool-{outage}"
    drain = 5
    try:
        cfg = base_config(store.url, [model_entry("chat", fakes.params("openai"), id="oa")],
                          server={"drain_timeout_s": drain})
        cfg["store"]["spool_dir"] = str(spool)
        gw = gateway_factory(cfg)
        n = 5
        streams = Streams(gw.url, n, f"unreachable-{outage}")
        _wait_streaming(fakes, n, timeout=10)
        assert store.process.proc is not None
        if outage == "killed":
            store.kill()
        else:
            store.process.proc.send_signal(signal.SIGSTOP)  # accepts connections, never answers
        rc, took = _sigterm_and_wait(gw, drain + STOP_BOUND_S + 5)
        streams.join(10)
        lines = [json.loads(line) for f in sorted(spool.glob("spool-*.jsonl"))
                 for line in f.read_text().splitlines() if line.strip()]
        # a record's argument is its keys, then (after a record separator) the record itself
        records = [json.loads(op["arg"].split("\x1e")[-1]) for op in lines if op["script"] == "record"]
        print(f"\nstore {outage}, SIGTERM with {n} streams: exit {rc} after {took:.1f}s "
              f"(bound {drain}+{STOP_BOUND_S:.0f}s); spool holds {len(records)} record(s)")
        assert rc in (0, -signal.SIGTERM), gw.process.log_tail()
        assert took < drain + STOP_BOUND_S
        assert sorted(r["task_id"] for r in records) == [f"unreachable-{outage}"] * n
        assert all(r["outcome"] == "ok" and r["usage_source"] == "provider" for r in records)
        assert not [r for r in streams.results if r["error"]], streams.results
        _no_traceback(gw.log())
    finally:
        if store.process.proc is not None and store.process.proc.poll() is None:
            store.process.proc.send_signal(signal.SIGCONT)
        store.process.stop(timeout=5)


def test_sigterm_marks_the_app_draining_and_readyz_answers_503() -> None:
    """In-process: the app's handler chains in front of the server's (which closes the listener)."""
    import asyncio

    from gateway.config.load import parse
    from gateway.edge.asgi import TaskgateApp

    app = TaskgateApp(parse("model_list: []\n", "t.yaml", {}))
    seen: list[int] = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        app.watch_signals()
        assert not app.draining
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert app.draining and seen == [signal.SIGTERM], "draining, and the server's own handler still ran"
    finally:
        signal.signal(signal.SIGTERM, original)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    for path, status in (("/readyz", 503), ("/healthz", 200)):
        sent.clear()
        asyncio.run(app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send))
        assert sent[0]["status"] == status, (path, sent)
        print(f"\nwhile draining: GET {path} -> {status} {sent[1]['body'].decode()}")


def _serve(workdir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    env.pop("TASKGATE_STORE_URL", None)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", "gateway.yaml",
                                 "--port", str(port)], cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def test_two_serve_processes_do_not_share_one_embedded_store(clean_fakes: Fakes, gateway_factory: Any,
                                                             tmp_path: Path) -> None:
    cfg = {"model_list": [model_entry("chat", clean_fakes.params("openai"), id="oa")]}  # the embedded default
    first = gateway_factory(cfg)
    assert first.proc is not None
    log = tmp_path / "second.log"
    from tests.conftest import free_port

    t0 = time.monotonic()
    second = _serve(tmp_path, free_port(), log)
    rc = second.wait(30)
    message = log.read_text()
    print(f"\nsecond serve on the same store.path: exit {rc} after {time.monotonic() - t0:.1f}s: "
          f"{message.strip().splitlines()[-1] if message.strip() else ''}")
    assert rc != 0 and "already in use by another taskgate process" in message
    assert f"pid {first.proc.pid}" in message
    assert httpx.get(f"{first.url}/readyz", timeout=5).status_code == 200, "the owner is undisturbed"
    # the owner dies without cleaning up (SIGKILL): the kernel drops the lock, its redis-server
    # saves and exits (PR_SET_PDEATHSIG), and a new process owns the store
    first.process.kill()
    port = free_port()
    third = _serve(tmp_path, port, tmp_path / "third.log")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and third.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert third.poll() is None, (tmp_path / "third.log").read_text()
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        third.terminate()
        assert third.wait(30) in (0, -signal.SIGTERM)
