#!/usr/bin/env python3
"""Taskgate benchmark harness: one command, all systems in one run.

    bench/run.sh                    # full run: direct, passthrough, taskgate
    bench/run.sh --smoke            # ~1 s points, c=1 and 16 only (CI)
    bench/run.sh --delay-ms 50      # "50 ms upstream at c=64" check
    bench/run.sh --systems direct,passthrough,taskgate,litellm,portkey

It starts the mock upstream (bench/mock_upstream.py, pinned on the load core),
then for each system: starts it (pinned on the system-under-test core), waits
for its readiness URL (cold start), checks one plain and one streamed chat
completion, records idle RSS, drives it with wrk (pinned on the load core) at
each concurrency, streaming and not, probes streaming TTFB at c=1
(bench/stream_probe.py), records peak RSS and CPU per request, stops it. Then
it prints one markdown table and writes the raw results as JSON (and the table
as .md) to bench/results/<timestamp>.{json,md}.

A system that fails to start or answers wrongly is reported as such and the
run carries on; every wait and every load step is bounded in time.

Adding a system: subclass System (name, command(), ready_path, chat_path,
headers, model, startup_timeout, available()) and add it to SYSTEMS.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import stream_probe  # noqa: E402
from common import BENCH, ROOT, git_rev, log  # noqa: E402,F811
from procstats import *  # noqa: E402,F401,F403
from report import *  # noqa: E402,F401,F403
from systems import *  # noqa: E402,F401,F403

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
               "cpu_us_per_req", "sut_cpu_pct", "mock_cpu_pct", "wrk_cpu")
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
    out["per_round"] = [{k: r.get(k) for k in ("rps", "p50_us", "p99_us", "cpu_us_per_req",
                                               "other_cpu_pct", "steal_pct", "error_total", "error")
                         if k in r} for r in rs]
    return out


class SystemRun:
    """One system through a run: start → (points, probes)* → finish.

    Every method is safe to call in any state: once the system failed, the
    remaining steps do nothing, and nothing raises out of here.
    """

    def __init__(self, sysobj: System, ctx: Ctx, plan: dict, sampler: PeakSampler):
        self.sys, self.ctx, self.plan, self.sampler = sysobj, ctx, plan, sampler
        self.name = sysobj.name
        self.res: dict = {"name": sysobj.name, "description": sysobj.description, "status": "pending"}
        self.proc: Proc | None = None
        self.port = 0
        self.pid = 0
        self.peak_rss = 0
        self.raw: dict[tuple[str, int], list[dict]] = {}
        self.probes: list[dict] = []
        self.headers: dict = {}

    @property
    def ok(self) -> bool:
        return self.res["status"] == "ok"

    def _fail(self, status: str, error: str, tail: bool = True):
        self.res.update(status=status, error=error)
        if tail and self.proc is not None:
            self.res["log_tail"] = self.proc.log_tail()
        log(f"{self.name}: {status}: {error}")

    def _alive(self) -> bool:
        if not self.ok:
            return False
        if self.proc is not None and self.proc.p.poll() is not None:
            self._fail("crashed", f"exited with code {self.proc.p.returncode} during the run")
            return False
        return True

    # -- start ------------------------------------------------------------
    def start(self) -> bool:
        try:
            return self._start()
        except Exception as e:  # never let one system kill the run
            self._fail("harness error", f"{type(e).__name__}: {e}")
            return False

    def _start(self) -> bool:
        ctx, a, sysobj = self.ctx, self.ctx.args, self.sys
        try:
            self.res["version"] = sysobj.version()
        except Exception:
            self.res["version"] = "?"
        why = sysobj.available(ctx)
        if why:
            self._fail("not available", why, tail=False)
            return False
        workdir = ctx.tmp / sysobj.name
        workdir.mkdir(exist_ok=True)
        if isinstance(sysobj, Direct):
            self.port, self.pid = ctx.mock_port, ctx.mock_pid
            self.res["cold_start_ms"] = ctx.mock_cold_ms
        else:
            self.port = free_port()
            try:
                cmd = sysobj.command(ctx, self.port, workdir)
            except Exception as e:
                self._fail("failed to start", f"could not build its command: {e}", tail=False)
                return False
            self.res["command"] = " ".join(shlex.quote(x) for x in cmd)
            log(f"{self.name}: starting on :{self.port}: {self.res['command']}")
            try:
                self.proc = Proc(sysobj.name, cmd, ctx.sut_cpus if ctx.pin else None,
                                 workdir / "server.log", sysobj.env(ctx), workdir)
            except OSError as e:
                self._fail("failed to start", f"{type(e).__name__}: {e}", tail=False)
                return False
            ok, secs, err = wait_ready(self.port, sysobj.ready_path, self.proc.p,
                                       a.startup_timeout or sysobj.startup_timeout, self.proc.t0)
            if not ok:
                self._fail("failed to start", err)
                return False
            self.res["cold_start_ms"] = round(secs * 1000, 1)
            self.pid = self.proc.pid
            log(f"{self.name}: ready in {secs * 1000:.0f} ms")
        self.res["port"] = self.port
        self.res["status"] = "ok"
        err = sanity(self.port, sysobj, ctx)
        if err:
            self._fail("bad responses", err)
            return False
        time.sleep(0.3)
        idle = tree_stats(self.pid)
        self.res["idle_rss_mb"] = round(idle["rss"] / 2**20, 1)
        self.res["processes"] = len(idle["pids"])
        self.peak_rss = idle["rss"]
        self.headers = sysobj.headers(ctx)
        return True

    def warmup(self):
        if not self._alive():
            return
        self.sampler.target = self
        try:
            if self.plan["warmup"] > 0:
                run_wrk(self.port, self.sys.chat_path, self.sys.model, False, max(self.plan["conc"]),
                        self.plan["warmup"], self.ctx.args.threads, self.headers, self.ctx.load_cpus,
                        self.plan["timeout"])
            else:  # at least warm the code paths and one keep-alive connection
                stream_probe.probe(self.url, n=50, warmup=0, model=self.sys.model,
                                   headers=self.headers, max_seconds=1.0)
        except Exception as e:
            self._fail("harness error", f"warm-up: {type(e).__name__}: {e}")
        finally:
            self.sampler.target = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.sys.chat_path}"

    # -- one load point ---------------------------------------------------
    def point(self, mode: str, c: int):
        if not self._alive():
            return
        self.sampler.target = self
        try:
            r = self._point(mode, c)
        except Exception as e:
            r = {"error": f"harness error: {type(e).__name__}: {e}"}
        finally:
            self.sampler.target = None
        self.raw.setdefault((mode, c), []).append(r)
        if "error" in r:
            log(f"{self.name}: {mode} c={c}: {r['error']}")
        self._alive()

    def _point(self, mode: str, c: int) -> dict:
        ctx, plan, pid = self.ctx, self.plan, self.pid
        before_up = mock_stats(ctx)
        before = tree_stats(pid)
        mock_before = tree_stats(ctx.mock_pid) if pid != ctx.mock_pid else None
        host_before, self_before = host_cpu(), own_cpu()
        t_wall = time.perf_counter()
        r = run_wrk(self.port, self.sys.chat_path, self.sys.model, mode == "stream", c,
                    plan["duration"], ctx.args.threads, self.headers, ctx.load_cpus, plan["timeout"])
        wall = time.perf_counter() - t_wall
        host_after, self_after = host_cpu(), own_cpu()
        mock_after = tree_stats(ctx.mock_pid) if pid != ctx.mock_pid else None
        after = tree_stats(pid)
        after_up = mock_stats(ctx)
        if "error" in r:
            return r
        n = max(1, r["requests"])
        sut_cpu = after["cpu"] - before["cpu"]
        mock_cpu = (mock_after["cpu"] - mock_before["cpu"]) if mock_before else 0.0
        r["cpu_us_per_req"] = round(sut_cpu * 1e6 / n, 1)
        r["sut_cpu_pct"] = round(100 * sut_cpu / wall, 1)
        r["mock_cpu_pct"] = round(100 * (mock_cpu if mock_before else sut_cpu) / wall, 1)
        if host_before and host_after:
            busy = host_after["busy"] - host_before["busy"]
            ours = sut_cpu + mock_cpu + r.get("wrk_cpu", 0.0) + (self_after - self_before)
            r["other_cpu_pct"] = round(max(0.0, 100 * (busy - ours) / wall), 1)
            r["steal_pct"] = round(100 * (host_after["steal"] - host_before["steal"]) / wall, 1)
        if before_up and after_up:
            up = after_up["chat"] - before_up["chat"]
            r["upstream_requests"] = up
            r["upstream_per_response"] = round(up / n, 3)
        log(f"{self.name:>11s}: {mode:9s} c={c:<3d} {r['rps']:>9.0f} rps  "
            f"p50 {r['p50_us'] / 1000:7.2f} ms  p99 {r['p99_us'] / 1000:7.2f} ms  "
            f"cpu sut {r['sut_cpu_pct']:.0f}% mock {r['mock_cpu_pct']:.0f}%"
            + (f" other {r['other_cpu_pct']:.0f}%" if "other_cpu_pct" in r else "")
            + (f"  errors {r['error_total']}" if r["error_total"] else ""))
        return r

    # -- streaming probe at c=1 ----------------------------------------------
    def probe(self):
        if not self._alive():
            return
        self.sampler.target = self
        try:
            pr = stream_probe.probe(self.url, n=self.plan["probe_n"], model=self.sys.model,
                                    headers=self.headers, max_seconds=self.plan["probe_seconds"],
                                    keep_samples=True)
        except Exception as e:
            pr = {"n": 0, "errors": 1, "error_samples": [f"{type(e).__name__}: {e}"]}
        finally:
            self.sampler.target = None
        self.probes.append(pr)
        if pr.get("n"):
            log(f"{self.name:>11s}: stream probe c=1 n={pr['n']}: TTFB p50 {pr['ttfb']['p50_ms']:.2f} ms, "
                f"first event p50 {pr['first_event']['p50_ms']:.2f} ms")
        else:
            log(f"{self.name}: stream probe failed: {pr.get('error_samples', [])[:1]}")
        self._alive()

    # -- finish -------------------------------------------------------------
    def finish(self) -> dict:
        res = self.res
        try:
            if self.raw:
                res["points"] = {"nonstream": {}, "stream": {}}
                for (mode, c), rs in self.raw.items():
                    res["points"][mode][str(c)] = aggregate_rounds(rs)
            if self.probes:
                res["stream_probe"] = stream_probe.merge(self.probes)
            if res.get("idle_rss_mb") is not None and self.pid:
                res["peak_rss_mb"] = round(max(self.peak_rss, tree_stats(self.pid)["rss"]) / 2**20, 1)
                res["peak_hwm_sum_mb"] = round(tree_stats(self.pid)["hwm"] / 2**20, 1)
            self._alive()
            if res["status"] == "ok":
                bad = [f"{m} c={c}" for m, pts in res.get("points", {}).items() for c, r in pts.items()
                       if "error" in r or r.get("error_rate", 0) > 0.01]
                if bad:
                    res["status"] = "errors"
                    res["error"] = "failed or >1% errors at: " + ", ".join(bad)
        except Exception as e:
            self._fail("harness error", f"finish: {type(e).__name__}: {e}")
        finally:
            self.stop()
        return res

    def stop(self):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        proc.stop()
        if self.ctx.log_dir is not None:
            try:
                self.ctx.log_dir.mkdir(parents=True, exist_ok=True)
                dst = self.ctx.log_dir / f"{self.name}.log"
                shutil.copyfile(proc.logfile, dst)
                self.res["log"] = str(dst.relative_to(ROOT) if dst.is_relative_to(ROOT) else dst)
            except OSError:
                pass


def point_list(plan: dict) -> list[tuple[str, int]]:
    return ([("nonstream", c) for c in plan["conc"]] +
            [("stream", c) for c in plan["stream_conc"]])


def run_sequential(runs: list[SystemRun], plan: dict) -> None:
    """One system up at a time: start it, all its rounds, stop it."""
    for run in runs:
        if run.start():
            run.warmup()
            for _ in range(plan["rounds"]):
                for mode, c in point_list(plan):
                    run.point(mode, c)
                run.probe()
        run.finish()


def run_interleaved(runs: list[SystemRun], plan: dict) -> None:
    """All systems up at once; each point is measured on every system back to
    back (order rotated every round), so neighbours in time share the noise."""
    try:
        for run in runs:
            run.start()
        for run in runs:
            run.warmup()
        for rnd in range(plan["rounds"]):
            k = rnd % max(1, len(runs))
            order = runs[k:] + runs[:k]
            if plan["rounds"] > 1:
                log(f"round {rnd + 1}/{plan['rounds']}")
            for mode, c in point_list(plan):
                for run in order:
                    run.point(mode, c)
            for run in order:
                run.probe()
    finally:
        for run in runs:
            run.finish()


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Taskgate benchmark harness",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--systems", default="direct,passthrough,taskgate",
                    help=f"comma list from: {','.join(SYSTEMS)} (direct is always run first)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per load point")
    ap.add_argument("--smoke", action="store_true",
                    help="CI mode: 1 s points, c=1 and 16 only, short probe, no warm-up")
    ap.add_argument("--concurrency", default=None, help="non-stream concurrencies (default 1,16,64)")
    ap.add_argument("--stream-concurrency", default=None, help="stream concurrencies (default 1,16,64)")
    ap.add_argument("--delay-ms", type=float, default=0.0,
                    help="mock upstream delay; with 50: the '50 ms upstream at c=64' check "
                         "(default points then 1,64)")
    ap.add_argument("--chunks", type=int, default=20, help="SSE content chunks per streamed response")
    ap.add_argument("--chunk-interval-ms", type=float, default=0.0)
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every point this many times (medians reported)")
    ap.add_argument("--sequential", action="store_true",
                    help="one system up at a time (default: all up, points interleaved across systems)")
    ap.add_argument("--workers", type=int, default=1, help="gateway workers (taskgate, litellm)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up seconds per system (default 2, smoke 0)")
    ap.add_argument("--probe-n", type=int, default=None, help="stream probe requests (default 200, smoke 30)")
    ap.add_argument("--sut-cpus", default="0", help="CPU list for the system under test")
    ap.add_argument("--load-cpus", default="1", help="CPU list for the mock, wrk and this script")
    ap.add_argument("--no-pin", action="store_true", help="don't use taskset")
    ap.add_argument("--startup-timeout", type=float, default=None,
                    help="seconds to wait for readiness (default per system: 30, taskgate 60, litellm 120)")
    ap.add_argument("--taskgate-cmd", default=None,
                    help="command to start taskgate, before 'serve ...' (default: the venv's taskgate)")
    ap.add_argument("--out", default=None, help="results JSON path (default bench/results/<ts>.json)")
    return ap.parse_args(argv)


def build_plan(a) -> dict:
    def ints(s):
        return [int(x) for x in s.split(",") if x.strip()]
    if a.smoke:
        default_c = "1,16"
    elif a.delay_ms:
        default_c = "1,64"
    else:
        default_c = "1,16,64"
    conc = ints(a.concurrency or default_c)
    sconc = ints(a.stream_concurrency or a.concurrency or default_c)
    if 1 not in conc:
        conc = [1] + conc  # added p50 at c=1 needs it
    return {
        "duration": 1 if a.smoke else max(1, a.duration),
        "rounds": max(1, a.rounds),
        "conc": conc,
        "stream_conc": sconc,
        "warmup": a.warmup if a.warmup is not None else (0 if a.smoke else 2),
        "probe_n": a.probe_n if a.probe_n is not None else (30 if a.smoke else 200),
        "probe_seconds": 5 if a.smoke else 30,
        "timeout": max(10.0, 4 * a.delay_ms / 1000 + 10),
    }


def main(argv=None) -> int:
    a = parse_args(argv)
    plan = build_plan(a)
    names = [n.strip() for n in a.systems.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        print(f"unknown system(s): {', '.join(unknown)}; known: {', '.join(SYSTEMS)}", file=sys.stderr)
        return 2
    names = ["direct"] + [n for n in names if n != "direct"]
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install -y wrk (bench/run.sh does it when root)", file=sys.stderr)
        return 2

    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    want = {int(x) for x in (a.sut_cpus + "," + a.load_cpus).split(",") if x.strip().isdigit()}
    pin = (not a.no_pin and shutil.which("taskset") is not None and len(cpus) >= 2
           and want <= cpus)
    if pin:
        os.sched_setaffinity(0, {int(x) for x in a.load_cpus.split(",")})
    else:
        log("CPU pinning off (taskset missing, <2 CPUs, or --no-pin): numbers are noisier")

    started = _dt.datetime.now()
    ts = started.strftime("%Y%m%d-%H%M%S")
    out_json = Path(a.out) if a.out else BENCH / "results" / f"{ts}.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    if load_before[0] > 1.0:
        log(f"note: load average is {load_before[0]:.2f} before the run: other work shares the CPUs")

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)

    tmp = Path(tempfile.mkdtemp(prefix="taskgate-bench-"))
    results: list[dict] = []
    mock = None
    t_run = time.perf_counter()
    try:
        mock_port = free_port()
        mock = Proc("mock", [sys.executable, str(BENCH / "mock_upstream.py"), "--port", str(mock_port),
                             "--delay-ms", str(a.delay_ms), "--chunks", str(a.chunks),
                             "--chunk-interval-ms", str(a.chunk_interval_ms)],
                    a.load_cpus if pin else None, tmp / "mock.log")
        ok, secs, err = wait_ready(mock_port, "/health", mock.p, 15, mock.t0)
        if not ok:
            print(f"mock upstream failed to start: {err}\n{mock.log_tail()}", file=sys.stderr)
            return 1
        ctx = Ctx(a, tmp, mock_port, mock.pid, pin)
        ctx.mock_cold_ms = round(secs * 1000, 1)
        ctx.log_dir = out_json.with_suffix(".logs")
        ctx.sut_cpus, ctx.load_cpus = a.sut_cpus, (a.load_cpus if pin else None)
        log(f"mock upstream on :{mock_port} (delay {a.delay_ms:g} ms, {a.chunks} chunks), "
            f"points: non-stream c={plan['conc']}, stream c={plan['stream_conc']}, {plan['duration']} s each")
        sampler = PeakSampler().start()
        runs = [SystemRun(SYSTEMS[n](), ctx, plan, sampler) for n in names]
        try:
            (run_sequential if a.sequential else run_interleaved)(runs, plan)
        finally:
            sampler.stop()
        results = [r.res for r in runs]
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    der = derive(results, plan, a.delay_ms, a.chunk_interval_ms)
    table = render_table(results, plan, der, a.delay_ms)
    title = (f"Taskgate bench {started:%Y-%m-%d %H:%M:%S} · git {git_rev() or '?'} · "
             f"{plan['duration']} s points · mock delay {a.delay_ms:g} ms, {a.chunks} chunks"
             + (f" every {a.chunk_interval_ms:g} ms" if a.chunk_interval_ms else "")
             + f" · workers {a.workers} · "
             + ("sequential · " if a.sequential else "interleaved · ")
             + (f"median of {plan['rounds']} rounds · " if plan["rounds"] > 1 else "")
             + (f"SUT on cpu {a.sut_cpus}, mock+wrk on cpu {a.load_cpus}" if pin else "unpinned"))
    notes = []
    for name, chk in der["checks"].items():
        mark = "OK" if chk["ok"] else "TOO LOW: the mock may be the bottleneck"
        notes.append(f"mock headroom vs {name}: best direct RPS is {chk['mock_headroom']:.1f}× "
                     f"its best RPS (need ≥ 5×) — {mark}")
    noisy = sorted({r["name"] for r in results for m in r.get("points", {}).values()
                    for x in m.values() if x.get("other_cpu_pct", 0) > 25 or x.get("steal_pct", 0) > 10})
    if noisy:
        notes.append("NOISY: other processes (or the hypervisor: steal) used > 25% of a core during "
                     f"points of: {', '.join(noisy)}; re-run for numbers to quote")
    if a.delay_ms:
        notes.append(f"ideal RPS at c=N with a {a.delay_ms:g} ms upstream is N / {a.delay_ms / 1000:g} s "
                     f"(c=64 → {64 / (a.delay_ms / 1000):,.0f}); 'x% of ideal' compares against it")
    for r in results:
        if r["status"] != "ok":
            note = f"{r['name']}: {r['status']}: {r.get('error', '')}"
            if r.get("log_tail"):
                note += "\n  ```\n  " + r["log_tail"].replace("\n", "\n  ") + "\n  ```"
            notes.append(note)
    notes.append("versions: " + "; ".join(f"{r['name']}: {r.get('version') or '?'}" for r in results))
    load_after = os.getloadavg()
    notes.append(f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}; "
                 f"d = direct, pt = passthrough; total {time.perf_counter() - t_run:.1f} s")
    report = f"### {title}\n\n{table}\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(report)

    raw = {
        "meta": {
            "started": started.isoformat(timespec="seconds"), "git": git_rev(),
            "argv": sys.argv[1:], "plan": plan, "args": vars(a), "pinned": pin,
            "sut_cpus": a.sut_cpus if pin else None, "load_cpus": a.load_cpus if pin else None,
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
            "wrk": (lambda p: (p.stdout + p.stderr).splitlines()[:1])(subprocess.run(["wrk", "-v"], capture_output=True, text=True)),
            "loadavg_before": load_before, "loadavg_after": load_after,
            "psutil": psutil is not None,
            "total_seconds": round(time.perf_counter() - t_run, 1),
        },
        "systems": results,
        "derived": der["derived"],
        "checks": der["checks"],
    }
    out_json.write_text(json.dumps(raw, indent=1, default=str))
    out_json.with_suffix(".md").write_text(report)
    print(f"raw results: {out_json.relative_to(ROOT) if out_json.is_relative_to(ROOT) else out_json}")
    # exit 0 even if a system failed: the report says so. Non-zero only when
    # nothing could be measured at all.
    return 0 if any(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
