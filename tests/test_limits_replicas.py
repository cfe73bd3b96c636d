"""Rate limits across real processes: the official openai SDK against ``taskgate serve`` sees a
``RateLimitError`` with OpenAI's headers, and three replicas on one Redis admit together no more
than one bucket allows (limit + burst, the bound of gateway/ledger/limits.py).

Loopback only; the upstream is the built-in demo model (no network). Bounded: ~5 s of load.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from tests.conftest import GatewayProcess, RedisServer, base_config, model_entry

DEMO = model_entry("demo", {"model": "demo/taskgate-demo", "input_cost_per_token": 0.000001,
                            "output_cost_per_token": 0.000002})
KEY = "replica-test-key-0001"
HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
           "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


def gateways(config: dict[str, Any], root: Path, n: int) -> list[GatewayProcess]:
    out = []
    for i in range(n):
        workdir = root / f"replica-{i}"  # each its own spool and journal directory
        workdir.mkdir()
        out.append(GatewayProcess(config, workdir))
    return out


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    procs: list[GatewayProcess] = []
    yield procs
    for gw in procs:
        gw.stop()


def test_openai_sdk_gets_rate_limit_error_with_headers(redis_server: RedisServer, tmp_path: Path,
                                                       started: list[GatewayProcess]) -> None:
    config = base_config(redis_server.url, [DEMO], auth={"keys": [{"key": KEY, "tenant": "sdk", "rpm": 1,
                                                                    "tpm": 100000}]})
    gw = gateways(config, tmp_path, 1)[0]
    started.append(gw)
    gw.start()
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": "hello"}], max_tokens=100)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-ratelimit-limit-requests"] == "1"
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 100000
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "again"}], max_tokens=100)
    err = caught.value
    assert err.status_code == 429
    assert err.code == "rate_limit_exceeded"
    headers = err.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    for name in HEADERS:
        assert name in headers, name
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")


RPM, BURST_S = 120, 2  # 2 a second, a bucket of 4
CLIENTS, LOAD_S = 6, 4.0


def test_three_replicas_on_one_redis_share_the_limit(redis_server: RedisServer, tmp_path: Path,
                                                     started: list[GatewayProcess]) -> None:
    config = base_config(redis_server.url, [DEMO], auth={"keys": [{"key": KEY, "tenant": "trio", "rpm": RPM}]},
                         limits={"burst_s": BURST_S})
    replicas = gateways(config, tmp_path, 3)
    for gw in replicas:
        started.append(gw)
        gw.start()
    lock = threading.Lock()
    admitted: list[tuple[int, float]] = []  # (replica, when the response came)
    refused = [0, 0, 0]
    other: list[int] = []
    stop_at = 0.0

    def client(index: int) -> None:
        with httpx.Client(timeout=10) as http:
            i = index
            while time.monotonic() < stop_at:
                r = i % 3  # spread over all three replicas
                i += 1
                resp = http.post(f"{replicas[r].url}/v1/chat/completions",
                                 headers={"Authorization": f"Bearer {KEY}"},
                                 json={"model": "demo", "messages": [{"role": "user", "content": "x"}],
                                       "max_tokens": 5})
                with lock:
                    if resp.status_code == 200:
                        admitted.append((r, time.monotonic()))
                    elif resp.status_code == 429:
                        refused[r] += 1
                        assert int(resp.headers["retry-after"]) >= 1
                    else:
                        other.append(resp.status_code)

    start = time.monotonic()
    stop_at = start + LOAD_S
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        for f in [pool.submit(client, i) for i in range(CLIENTS)]:
            f.result()
    end = time.monotonic()
    window = end - start  # every admission happened inside [start, end]
    bound = RPM / 60 * (BURST_S + window)  # gateway/ledger/limits.py: per_minute * (burst_s + W) / 60
    per_replica = [sum(1 for r, _ in admitted if r == i) for i in range(3)]
    print(f"\nthree replicas, rpm {RPM}, burst_s {BURST_S}: {len(admitted)} admitted {per_replica} and "
          f"{sum(refused)} refused {refused} in {window:.2f} s; bound {bound:.1f} "
          f"(without a shared limit: {3 * bound:.1f})")
    assert other == []
    assert len(admitted) <= bound
    assert sum(refused) > len(admitted), "the load exceeded the limit"
    assert len(admitted) >= RPM / 60 * window * 0.5, "the limit admitted its rate"
    assert all(n > 0 for n in per_replica), "every replica admitted some"
