#!/usr/bin/env python3
"""Streaming latency probe at concurrency 1, over a raw keep-alive socket.

For each of N streamed chat requests it measures, from just before the
request bytes are sent:
  ttfb         first byte of the response (status line) arrives
  first_event  first SSE "data:" line of the body arrives
  total        the whole response has arrived (terminating chunk / [DONE])
and reports median, p90, p99, mean (milliseconds) as one JSON object on
stdout (with --json) or a short text summary.

    python bench/stream_probe.py --url http://127.0.0.1:18001/v1/chat/completions -n 200

No HTTP library: the socket is read with recv() as data arrives (TCP_NODELAY,
no buffering), and HTTP/1.1 chunked or Content-Length framing is parsed by
hand so the connection is reused like a real client's pool would.
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from urllib.parse import urlsplit


class ProbeError(Exception):
    pass


def build_request(host: str, port: int, path: str, model: str, headers: dict[str, str],
                  include_usage: bool = True) -> bytes:
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello in five words."},
        ],
        "max_tokens": 16,
        "temperature": 0,
        "stream": True,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    data = json.dumps(body, separators=(",", ":")).encode()
    h = {
        "Host": f"{host}:{port}",
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Authorization": "Bearer sk-bench",
        "Content-Length": str(len(data)),
        "Connection": "keep-alive",
    }
    h.update(headers)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode("latin-1") + data


class Conn:
    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None

    def connect(self):
        self.close()
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def one(self, req: bytes, deadline: float) -> dict:
        """Send one request, read its whole response. Returns timings in seconds."""
        if self.sock is None:
            self.connect()
        s = self.sock
        clock = time.perf_counter
        t0 = clock()
        s.sendall(req)
        buf = b""
        ttfb = first_event = None
        # --- status line + headers
        while b"\r\n\r\n" not in buf:
            if clock() > deadline:
                raise ProbeError("timeout waiting for headers")
            d = s.recv(65536)
            if not d:
                raise ProbeError("connection closed before headers")
            if ttfb is None:
                ttfb = clock() - t0
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            raise ProbeError(f"bad status line {lines[0][:80]!r}")
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            hdrs[k.strip().lower()] = v.strip().lower()
        chunked = b"chunked" in hdrs.get(b"transfer-encoding", b"")
        clen = int(hdrs[b"content-length"]) if b"content-length" in hdrs else None
        close_after = hdrs.get(b"connection") == b"close" or (not chunked and clen is None)

        body = bytearray()  # de-chunked body
        raw = bytearray(rest)  # still-framed bytes

        def feed_event_check():
            nonlocal first_event
            if first_event is None and b"data:" in body:
                first_event = clock() - t0

        done = False
        while not done:
            if chunked:
                # parse as many complete chunks as raw holds
                while True:
                    i = raw.find(b"\r\n")
                    if i < 0:
                        break
                    size_s = bytes(raw[:i]).split(b";")[0].strip()
                    try:
                        size = int(size_s, 16)
                    except ValueError:
                        raise ProbeError(f"bad chunk size {size_s[:20]!r}")
                    if size == 0:
                        # last chunk: consume optional trailers up to the blank line
                        j = raw.find(b"\r\n\r\n", i)
                        if j < 0 and raw[i:i + 4] != b"\r\n\r\n":
                            break
                        done = True
                        break
                    if len(raw) < i + 2 + size + 2:
                        # partial chunk: still look for the first event in what arrived
                        if first_event is None and b"data:" in raw[i + 2:]:
                            first_event = clock() - t0
                        break
                    body += raw[i + 2:i + 2 + size]
                    del raw[:i + 2 + size + 2]
                    feed_event_check()
            else:
                body += raw
                raw.clear()
                feed_event_check()
                if clen is not None and len(body) >= clen:
                    done = True
            if done:
                break
            if clock() > deadline:
                raise ProbeError("timeout reading body")
            d = s.recv(65536)
            if not d:
                if not chunked and clen is None:
                    break  # close-delimited body
                raise ProbeError("connection closed mid-body")
            raw += d
        total = clock() - t0
        if close_after:
            self.close()
        if status != 200:
            raise ProbeError(f"HTTP {status}: {bytes(body[:200])!r}")
        if b"[DONE]" not in body:
            raise ProbeError("stream ended without data: [DONE]")
        if first_event is None:
            raise ProbeError("no data: event in the stream")
        return {"ttfb": ttfb, "first_event": first_event, "total": total}


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def summarize(xs: list[float]) -> dict:
    ms = [x * 1000.0 for x in xs]
    if not ms:
        return {}
    return {"p50_ms": round(pct(ms, 50), 3), "p90_ms": round(pct(ms, 90), 3),
            "p99_ms": round(pct(ms, 99), 3), "mean_ms": round(statistics.fmean(ms), 3),
            "min_ms": round(min(ms), 3), "max_ms": round(max(ms), 3)}


def probe(url: str, n: int = 200, model: str = "bench-model", headers: dict | None = None,
          warmup: int = 5, max_seconds: float = 30.0, timeout: float = 10.0,
          keep_samples: bool = False) -> dict:
    """Run the probe; bounded by n requests and max_seconds, whichever comes first.

    keep_samples: also return the raw timings (seconds) under "samples", for merge().
    """
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    req = build_request(host, port, path, model, headers or {})
    conn = Conn(host, port, timeout)
    res = {"ttfb": [], "first_event": [], "total": []}
    errors: list[str] = []
    start = time.perf_counter()
    stop_at = start + max_seconds
    i = 0
    try:
        while i < warmup + n and time.perf_counter() < stop_at:
            i += 1
            try:
                r = conn.one(req, min(stop_at, time.perf_counter() + timeout))
            except (ProbeError, OSError) as e:
                conn.close()
                errors.append(str(e)[:200])
                if len(errors) >= 10 and not res["total"]:
                    break  # it never works: stop early
                continue
            if i > warmup:
                for k in res:
                    res[k].append(r[k])
    finally:
        conn.close()
    out = {"url": url, "n": len(res["total"]), "requested": n, "errors": len(errors),
           "error_samples": errors[:3], "elapsed_s": round(time.perf_counter() - start, 3)}
    for k, xs in res.items():
        out[k] = summarize(xs)
    if keep_samples:
        out["samples"] = res
    return out


def merge(results: list[dict]) -> dict:
    """Several probe() results (made with keep_samples=True) as one; drops the samples."""
    if not results:
        return {}
    allx: dict[str, list[float]] = {"ttfb": [], "first_event": [], "total": []}
    for r in results:
        for k in allx:
            allx[k].extend((r.get("samples") or {}).get(k, []))
    out = {"url": results[0].get("url"), "n": sum(r.get("n", 0) for r in results),
           "requested": sum(r.get("requested", 0) for r in results),
           "errors": sum(r.get("errors", 0) for r in results),
           "error_samples": [e for r in results for e in r.get("error_samples", [])][:3],
           "elapsed_s": round(sum(r.get("elapsed_s", 0) for r in results), 3),
           "rounds": len(results)}
    for k, xs in allx.items():
        out[k] = summarize(xs)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="streaming TTFB / first-event probe at c=1")
    ap.add_argument("--url", required=True)
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--model", default="bench-model")
    ap.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    headers = {}
    for h in a.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    out = probe(a.url, a.n, a.model, headers, a.warmup, a.max_seconds)
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{out['n']} ok, {out['errors']} errors in {out['elapsed_s']} s")
        for k in ("ttfb", "first_event", "total"):
            s = out[k]
            if s:
                print(f"  {k:12s} p50 {s['p50_ms']:.3f} ms  p90 {s['p90_ms']:.3f}  p99 {s['p99_ms']:.3f}")
        if out["error_samples"]:
            print("  errors:", out["error_samples"])
    return 0 if out["n"] else 1


if __name__ == "__main__":
    sys.exit(main())
