"""Measuring one system through a whole run: start, sanity, load points, probes, RSS, CPU."""
from __future__ import annotations

import shlex
import shutil
import time

import stream_probe  # noqa: F401
from common import ROOT, log  # noqa: F401
from procstats import *  # noqa: F401,F403
from report import *  # noqa: F401,F403
from systems import *  # noqa: F401,F403
from load import *  # noqa: F401,F403
from store import cpus_allowed, find_embedded


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
        self.store_pid = 0  # a Taskgate system's redis-server: its embedded one, or the shared one
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
        if isinstance(sysobj, Taskgate):
            self._find_store(idle["pids"])
        return True

    def _find_store(self, pids: list[int]) -> None:
        shared = self.ctx.store is not None
        self.store_pid = self.ctx.store.pid if shared else find_embedded(pids)
        if not self.store_pid:
            return
        self.res["store"] = {
            "kind": "shared" if shared else "embedded", "pid": self.store_pid,
            "cpus": cpus_allowed(self.store_pid), "gateway_cpus": cpus_allowed(self.pid),
            "idle_rss_mb": round(tree_stats(self.store_pid)["rss"] / 2**20, 1),
            "in_system_numbers": not shared,
        }
        log(f"{self.name}: store {self.res['store']['kind']} (redis-server pid {self.store_pid} on CPU "
            f"{self.res['store']['cpus']}, gateway on CPU {self.res['store']['gateway_cpus']})")

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
        store_before = tree_stats(self.store_pid)["cpu"] if self.store_pid else None
        host_before, self_before = host_cpu(), own_cpu()
        t_wall = time.perf_counter()
        r = run_wrk(self.port, self.sys.chat_path, self.sys.model, mode == "stream", c,
                    plan["duration"], ctx.args.threads, self.headers, ctx.load_cpus, plan["timeout"])
        wall = time.perf_counter() - t_wall
        host_after, self_after = host_cpu(), own_cpu()
        mock_after = tree_stats(ctx.mock_pid) if pid != ctx.mock_pid else None
        after = tree_stats(pid)
        store_cpu = (tree_stats(self.store_pid)["cpu"] - store_before) if store_before is not None else None
        after_up = mock_stats(ctx)
        if "error" in r:
            return r
        n = max(1, r["requests"])
        sut_cpu = after["cpu"] - before["cpu"]
        mock_cpu = (mock_after["cpu"] - mock_before["cpu"]) if mock_before else 0.0
        r["cpu_us_per_req"] = round(sut_cpu * 1e6 / n, 1)
        if store_cpu is not None:  # embedded: part of cpu_us_per_req; shared: on top of it
            r["store_cpu_us_per_req"] = round(store_cpu * 1e6 / n, 1)
        r["sut_cpu_pct"] = round(100 * sut_cpu / wall, 1)
        r["mock_cpu_pct"] = round(100 * (mock_cpu if mock_before else sut_cpu) / wall, 1)
        if host_before and host_after:
            busy = host_after["busy"] - host_before["busy"]
            ours = sut_cpu + mock_cpu + r.get("wrk_cpu", 0.0) + (self_after - self_before)
            if store_cpu is not None and ctx.store is not None:
                ours += store_cpu  # the shared store serves this system only during its point
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
