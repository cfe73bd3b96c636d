#!/usr/bin/env python3
"""Taskgate benchmark harness: one command, all systems in one run.

    bench/run.sh                    # full run: direct, passthrough, taskgate
    bench/run.sh --smoke            # ~1 s points, c=1 and 16 only (CI)
    bench/run.sh --delay-ms 50      # "50 ms upstream at c=64" check
    bench/run.sh --systems direct,passthrough,taskgate,litellm,portkey
    bench/run.sh --baseline HEAD~1  # also taskgate@<sha>: HEAD~1's code, same run
    bench/run.sh --store shared     # Taskgate on the bench's own redis-server, on another core

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
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import BENCH, ROOT, git_rev, log  # noqa: E402,F811
from procstats import *  # noqa: E402,F401,F403
from report import *  # noqa: E402,F401,F403
from systems import *  # noqa: E402,F401,F403

from load import *  # noqa: E402,F401,F403
from measure import *  # noqa: E402,F401,F403
from store import APPENDFSYNC, SharedStore, pick_store_cpus  # noqa: E402


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
    ap.add_argument("--store", choices=("embedded", "shared"), default="embedded",
                    help="Taskgate's store: embedded (each gateway's own redis-server, in its process tree) or "
                         "shared (one redis-server of the bench's, appendonly yes + appendfsync everysec, on "
                         "another core, as production runs; its CPU is reported apart)")
    ap.add_argument("--store-cpus", default="auto",
                    help="CPU list for the shared store; auto: a CPU outside --sut-cpus (outside --load-cpus "
                         "too when there is one); none: unpinned")
    ap.add_argument("--startup-timeout", type=float, default=None,
                    help="seconds to wait for readiness (default per system: 30, taskgate 60, litellm 120)")
    ap.add_argument("--taskgate-cmd", default=None,
                    help="command to start taskgate, before 'serve ...' (default: the venv's taskgate)")
    ap.add_argument("--baseline", metavar="REV", default=None,
                    help="also measure Taskgate at git revision REV (system 'taskgate@<sha>'), run from a "
                         "worktree in $TMPDIR/taskgate-bench-baseline-<sha> (created or reused), same config "
                         "and CPUs as 'taskgate', interleaved with the others: before/after in one run")
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
    baseline = None
    if a.baseline:
        try:
            wt, sha, short, reused = baseline_worktree(a.baseline)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            print(str(e), file=sys.stderr)
            return 2
        baseline = TaskgateBaseline(wt, sha, short, a.baseline)
        log(f"baseline {a.baseline} = {short}: {'reusing' if reused else 'created'} worktree {wt}")
        if "taskgate" not in names:
            log("note: --baseline without 'taskgate' in --systems: nothing to compare it with")

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
    store = (SharedStore(tmp, pick_store_cpus(a.store_cpus, set(cpus), a.sut_cpus, a.load_cpus, pin))
             if a.store == "shared" else None)
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
        if store is not None:
            err = store.start()
            if err:
                print(f"--store shared: {err}", file=sys.stderr)
                return 1
            ctx.store = store
            log(f"store {store.describe()}")
        ctx.mock_cold_ms = round(secs * 1000, 1)
        ctx.log_dir = out_json.with_suffix(".logs")
        ctx.sut_cpus, ctx.load_cpus = a.sut_cpus, (a.load_cpus if pin else None)
        log(f"mock upstream on :{mock_port} (delay {a.delay_ms:g} ms, {a.chunks} chunks), "
            f"points: non-stream c={plan['conc']}, stream c={plan['stream_conc']}, {plan['duration']} s each")
        sampler = PeakSampler().start()
        sysobjs = [SYSTEMS[n]() for n in names]
        if baseline is not None:  # right after taskgate, so the two are measured back to back
            at = names.index("taskgate") + 1 if "taskgate" in names else len(sysobjs)
            sysobjs.insert(at, baseline)
        runs = [SystemRun(s, ctx, plan, sampler) for s in sysobjs]
        try:
            (run_sequential if a.sequential else run_interleaved)(runs, plan)
        finally:
            sampler.stop()
        results = [r.res for r in runs]
    finally:
        if store is not None:
            store.stop()
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    der = derive(results, plan, a.delay_ms, a.chunk_interval_ms,
                 baseline=baseline.name if baseline else None)
    table = render_table(results, plan, der, a.delay_ms)
    title = (f"Taskgate bench {started:%Y-%m-%d %H:%M:%S} · git {git_rev() or '?'} · "
             f"{plan['duration']} s points · mock delay {a.delay_ms:g} ms, {a.chunks} chunks"
             + (f" every {a.chunk_interval_ms:g} ms" if a.chunk_interval_ms else "")
             + f" · workers {a.workers} · store {a.store} · "
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
    if baseline is not None and der.get("baseline_note"):
        notes.append(der["baseline_note"])
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
    notes.append("store: " + (store.describe() if store is not None else
                              "embedded: each Taskgate system's own redis-server (store.url: embedded), a child in "
                              "its process tree, so in its CPU and RSS (store rows: where it ran, and its part of the CPU)"))
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
            "store": ({"kind": "shared", "port": store.port, "cpus": store.cpus, "appendonly": True,
                       "appendfsync": APPENDFSYNC, "dbs": store.dbs} if store is not None else {"kind": "embedded"}),
            "baseline": ({"rev": a.baseline, "sha": baseline.sha, "name": baseline.name,
                          "worktree": str(baseline.worktree)} if baseline else None),
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
