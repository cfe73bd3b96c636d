"""Driving a system: HTTP helpers, child processes, wrk runs, sanity checks."""
from __future__ import annotations

import http.client
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import stream_probe  # noqa: F401
from common import BENCH  # noqa: F401
from procstats import *  # noqa: F401,F403
from report import *  # noqa: F401,F403
from systems import *  # noqa: F401,F403

# --------------------------------------------------------------------------
# small HTTP helpers (stdlib only, bounded by timeouts)
# --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, data, {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def wait_ready(port: int, path: str, proc: subprocess.Popen | None, timeout: float,
               t0: float) -> tuple[bool, float | None, str]:
    """Poll until GET path answers 200. Returns (ok, seconds since t0, last error)."""
    deadline = t0 + timeout
    last = "no answer"
    while time.perf_counter() < deadline:
        if proc is not None and proc.poll() is not None:
            return False, None, f"process exited with code {proc.returncode}"
        try:
            st, data, _ = http_request(port, "GET", path, timeout=1.0)
            if st == 200:
                return True, time.perf_counter() - t0, ""
            last = f"HTTP {st} on {path}: {data[:120]!r}"
        except (OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.02)
    return False, None, f"not ready after {timeout:g} s ({last})"


def chat_body(model: str, stream: bool) -> bytes:
    b = {"model": model, "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16, "temperature": 0, "stream": stream}
    if stream:
        b["stream_options"] = {"include_usage": True}
    return json.dumps(b).encode()


# --------------------------------------------------------------------------
# process management
# --------------------------------------------------------------------------
class Proc:
    """A started process in its own session, killed as a whole tree."""

    live: list["Proc"] = []

    def __init__(self, name: str, cmd: list[str], cpus: str | None, logfile: Path,
                 env: dict | None = None, cwd: Path | None = None):
        self.name = name
        full = (["taskset", "-c", cpus] if cpus else []) + cmd
        self.cmdline = full
        self.logfile = logfile
        e = dict(os.environ)
        e.update(env or {})
        e.setdefault("PYTHONUNBUFFERED", "1")
        self._log = open(logfile, "wb")
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(full, stdout=self._log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=e, cwd=str(cwd) if cwd else None,
                                  start_new_session=True)
        Proc.live.append(self)

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self, grace: float = 5.0):
        pids = tree_pids(self.p.pid) if self.p.poll() is None else []
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.p.poll() is not None and not any(_alive(x) for x in pids):
                break
            try:
                os.killpg(self.p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            for x in pids:  # stragglers that left the process group
                try:
                    os.kill(x, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 2.0)
            while time.monotonic() < deadline:
                if self.p.poll() is not None and not any(_alive(x) for x in pids):
                    break
                time.sleep(0.05)
        try:
            self.p.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        if self in Proc.live:
            Proc.live.remove(self)

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            st = f.read()
        return st[st.rfind(b")") + 2:st.rfind(b")") + 3] != b"Z"
    except OSError:
        return False


def stop_all():
    for p in list(Proc.live):
        try:
            p.stop(grace=3.0)
        except Exception:
            pass


# --------------------------------------------------------------------------
# load generation
# --------------------------------------------------------------------------
def run_wrk(port: int, path: str, model: str, stream: bool, conc: int, duration: int,
            threads: int, headers: dict, cpus: str | None, timeout_s: float) -> dict:
    env = dict(os.environ)
    env.update({"BENCH_MODEL": model, "BENCH_STREAM": "1" if stream else "0",
                "BENCH_AUTH": "sk-bench",
                "BENCH_HEADERS": "|".join(f"{k}: {v}" for k, v in headers.items())})
    t = max(1, min(threads, conc))
    cmd = (["taskset", "-c", cpus] if cpus else []) + [
        "wrk", "-t", str(t), "-c", str(conc), "-d", f"{duration}s",
        "--timeout", f"{int(max(1, timeout_s))}s", "-s", str(BENCH / "post.lua"),
        f"http://127.0.0.1:{port}{path}"]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env,
                           timeout=duration + timeout_s + 15, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": "wrk did not finish in time"}
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    m = re.search(r"^BENCH_RESULT (\{.*\})\s*$", r.stdout, re.M)
    if not m:
        return {"error": f"wrk exit {r.returncode}: {(r.stderr or r.stdout)[-300:].strip()}"}
    res = json.loads(m.group(1))
    res["concurrency"] = conc
    res["threads"] = t
    res["wrk_cpu"] = round(wrk_cpu, 4)
    errs = sum(res["errors"].values())
    res["error_total"] = errs
    res["error_rate"] = errs / max(1, res["requests"] + errs)
    nonstat = [ln.strip() for ln in r.stdout.splitlines() if "Non-2xx" in ln or "Socket errors" in ln]
    if nonstat:
        res["wrk_notes"] = nonstat
    return res


def mock_stats(ctx: Ctx) -> dict:
    try:
        st, data, _ = http_request(ctx.mock_port, "GET", "/stats", timeout=2)
        return json.loads(data) if st == 200 else {}
    except (OSError, ValueError, http.client.HTTPException):
        return {}


# --------------------------------------------------------------------------
# one system
# --------------------------------------------------------------------------
def sanity(port: int, sysobj: System, ctx: Ctx) -> str | None:
    """One plain and one streamed completion must look like OpenAI's. None = fine."""
    h = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    h.update(sysobj.headers(ctx))
    try:
        st, data, _ = http_request(port, "POST", sysobj.chat_path, chat_body(sysobj.model, False),
                                   h, timeout=10)
    except (OSError, http.client.HTTPException) as e:
        return f"chat request failed: {type(e).__name__}: {e}"
    if st != 200:
        return f"chat request: HTTP {st}: {data[:300]!r}"
    try:
        j = json.loads(data)
        assert j.get("object") == "chat.completion", "object != chat.completion"
        assert j["choices"][0]["message"]["content"], "empty content"
        assert j.get("usage", {}).get("total_tokens"), "no usage"
    except (ValueError, KeyError, IndexError, TypeError, AssertionError) as e:
        return f"chat response is not a chat.completion ({e}): {data[:300]!r}"
    pr = stream_probe.probe(f"http://127.0.0.1:{port}{sysobj.chat_path}", n=1, warmup=0,
                            model=sysobj.model, headers=sysobj.headers(ctx), max_seconds=10)
    if pr["n"] != 1:
        return f"streamed chat request failed: {pr['error_samples'][:1]}"
    return None


MEDIAN_KEYS = ("rps", "lat_mean_us", "lat_stdev_us", "p50_us", "p90_us", "p99_us", "p999_us",
               "cpu_us_per_req", "store_cpu_us_per_req", "sut_cpu_pct", "mock_cpu_pct", "wrk_cpu")
SUM_KEYS = ("requests", "bytes", "duration_us", "error_total", "upstream_requests")


def aggregate_rounds(rs: list[dict]) -> dict:
    """One point measured in several rounds -> medians (latency, RPS, CPU), sums, worst noise."""
    if len(rs) == 1:
        return rs[0]
    ok = [r for r in rs if "error" not in r]
    if not ok:
        return dict(rs[-1], rounds=len(rs))
    out = dict(ok[0])
    for k in MEDIAN_KEYS:
        vals = [r[k] for r in ok if k in r]
        if vals:
            out[k] = statistics.median(vals)
    for k in SUM_KEYS:
        if all(k in r for r in ok):
            out[k] = sum(r[k] for r in ok)
    out["lat_min_us"] = min(r["lat_min_us"] for r in ok)
    out["lat_max_us"] = max(r["lat_max_us"] for r in ok)
    out["errors"] = {k: sum(r["errors"][k] for r in ok) for k in ok[0]["errors"]}
    out["error_rate"] = out["error_total"] / max(1, out["requests"] + out["error_total"])
    for k in ("other_cpu_pct", "steal_pct"):
        if any(k in r for r in ok):
            out[k] = max(r.get(k, 0.0) for r in ok)
    if all("upstream_per_response" in r for r in ok):
        out["upstream_per_response"] = min(r["upstream_per_response"] for r in ok)
    out["rounds"] = len(rs)
    out["failed_rounds"] = len(rs) - len(ok)
    out["per_round"] = [{k: r.get(k) for k in ("rps", "p50_us", "p99_us", "cpu_us_per_req", "store_cpu_us_per_req",
                                               "other_cpu_pct", "steal_pct", "error_total", "error")
                         if k in r} for r in rs]
    return out
