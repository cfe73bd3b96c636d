"""Derived figures and the markdown table of a benchmark run (pure functions)."""
from __future__ import annotations


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def _pt(res: dict | None, mode: str, c: int) -> dict | None:
    if not res or res.get("status") not in ("ok", "errors", "crashed"):
        return None
    r = res.get("points", {}).get(mode, {}).get(str(c))
    return r if r and "error" not in r else None


def derive(results: list[dict], plan: dict, delay_ms: float, chunk_interval_ms: float = 0.0,
           baseline: str | None = None) -> dict:
    by = {r["name"]: r for r in results}
    d, p = by.get("direct"), by.get("passthrough")
    out: dict = {}
    for r in results:
        dv: dict = {}
        for mode in ("nonstream", "stream"):
            for c in plan["stream_conc"] if mode == "stream" else plan["conc"]:
                me = _pt(r, mode, c)
                if not me:
                    continue
                for ref_name, ref in (("direct", d), ("passthrough", p)):
                    rp = _pt(ref, mode, c)
                    if rp and rp["rps"]:
                        dv[f"{mode}_c{c}_rps_vs_{ref_name}"] = round(me["rps"] / rp["rps"], 3)
                if delay_ms:
                    ideal = c / (delay_ms / 1000.0)
                    dv[f"{mode}_c{c}_rps_vs_ideal"] = round(me["rps"] / ideal, 3)
        me1 = _pt(r, "nonstream", 1)
        for ref_name, ref in (("direct", d), ("passthrough", p)):
            rp = _pt(ref, "nonstream", 1)
            if me1 and rp:
                dv[f"added_p50_c1_ms_vs_{ref_name}"] = round((me1["p50_us"] - rp["p50_us"]) / 1000, 3)
                dv[f"added_p99_c1_ms_vs_{ref_name}"] = round((me1["p99_us"] - rp["p99_us"]) / 1000, 3)
            sp, rsp = (r.get("stream_probe") or {}), ((ref or {}).get("stream_probe") or {})
            if sp.get("n") and rsp.get("n"):
                dv[f"added_ttfb_c1_ms_vs_{ref_name}"] = round(
                    sp["ttfb"]["p50_ms"] - rsp["ttfb"]["p50_ms"], 3)
                dv[f"added_first_event_c1_ms_vs_{ref_name}"] = round(
                    sp["first_event"]["p50_ms"] - rsp["first_event"]["p50_ms"], 3)
        out[r["name"]] = dv
    # mock headroom: the mock's best direct RPS must be >= 5x each system's best
    checks = {}
    if d and not delay_ms:
        # stream points only count when the mock streams flat out (no chunk interval)
        modes = ("nonstream", "stream") if not chunk_interval_ms else ("nonstream",)
        for r in results:
            if r["name"] == "direct":
                continue
            worst = None
            for mode in modes:
                cs = plan["stream_conc"] if mode == "stream" else plan["conc"]
                dbest = max((x["rps"] for c in cs if (x := _pt(d, mode, c))), default=0)
                sbest = max((x["rps"] for c in cs if (x := _pt(r, mode, c))), default=0)
                if dbest and sbest:
                    ratio = dbest / sbest
                    worst = ratio if worst is None else min(worst, ratio)
            if worst is not None:
                checks[r["name"]] = {"mock_headroom": round(worst, 2), "ok": worst >= 5.0}
    res = {"derived": out, "checks": checks}
    if baseline:
        res["baseline_note"] = _vs_baseline(by.get("taskgate"), by.get(baseline), baseline, plan,
                                            out.setdefault("taskgate", {}))
    return res


def _vs_baseline(t: dict | None, b: dict | None, bname: str, plan: dict, dv: dict) -> str | None:
    """taskgate ÷ taskgate@<rev> per point (RPS, CPU µs / request) into dv, and a one-line note."""
    if not t or not b:
        return None
    parts = []
    for key, label, better in (("rps", "RPS", "> 1× = faster"),
                               ("cpu_us_per_req", "CPU µs / request", "< 1× = cheaper")):
        per_mode = []
        for mode in ("nonstream", "stream"):
            cells = []
            for c in plan["stream_conc"] if mode == "stream" else plan["conc"]:
                me, ref = _pt(t, mode, c), _pt(b, mode, c)
                if me and ref and me.get(key) and ref.get(key):
                    ratio = round(me[key] / ref[key], 3)
                    dv[f"{mode}_c{c}_{'rps' if key == 'rps' else 'cpu'}_vs_baseline"] = ratio
                    cells.append(f"c={c} {ratio:.2f}×")
            if cells:
                per_mode.append(f"{'non-stream' if mode == 'nonstream' else 'stream'} " + ", ".join(cells))
        if per_mode:
            parts.append(f"{label} ({better}): " + "; ".join(per_mode))
    m1, r1 = _pt(t, "nonstream", 1), _pt(b, "nonstream", 1)
    if m1 and r1:
        dv["added_p50_c1_ms_vs_baseline"] = round((m1["p50_us"] - r1["p50_us"]) / 1000, 3)
        parts.append(f"p50 c=1 {dv['added_p50_c1_ms_vs_baseline']:+.3f} ms")
    sp, rsp = (t.get("stream_probe") or {}), (b.get("stream_probe") or {})
    if sp.get("n") and rsp.get("n"):
        dv["added_ttfb_c1_ms_vs_baseline"] = round(sp["ttfb"]["p50_ms"] - rsp["ttfb"]["p50_ms"], 3)
        parts.append(f"stream TTFB p50 c=1 {dv['added_ttfb_c1_ms_vs_baseline']:+.3f} ms")
    if not parts:
        return f"taskgate vs {bname}: no point measured on both"
    return f"**taskgate vs {bname}** (taskgate ÷ baseline, same run): " + " · ".join(parts)


def fmt_int(x) -> str:
    return f"{x:,.0f}"


def fmt_ms(x) -> str:
    return f"{x:.2f}" if abs(x) < 100 else f"{x:.0f}"


def render_table(results: list[dict], plan: dict, der: dict, delay_ms: float) -> str:
    names = [r["name"] for r in results]
    by = {r["name"]: r for r in results}
    D = der["derived"]
    rows: list[list[str]] = []

    def row(label, fn):
        cells = []
        for n in names:
            try:
                v = fn(by[n], D.get(n, {}))
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                v = None
            cells.append("–" if v is None or v == "" else v)
        rows.append([label] + cells)

    def status(r, _):
        s = r["status"]
        return s if s == "ok" else f"**{s}**"

    row("status", status)
    row("cold start (spawn → first 200), ms", lambda r, _: fmt_int(r["cold_start_ms"]))
    def procs(r):
        return f" ({r['processes']} processes)" if r.get("processes", 1) > 1 else ""

    row("RSS idle / peak, MB (process tree)",
        lambda r, _: f"{r['idle_rss_mb']:.0f} / {r['peak_rss_mb']:.0f}{procs(r)}" if "peak_rss_mb" in r
        else (f"{r['idle_rss_mb']:.0f} / –{procs(r)}" if "idle_rss_mb" in r else None))

    def rps_cell(mode, c):
        def f(r, dv):
            pt = _pt(r, mode, c)
            if not pt:
                return None
            s = fmt_int(pt["rps"])
            extra = []
            if r["name"] != "direct" and f"{mode}_c{c}_rps_vs_direct" in dv:
                extra.append(f"{dv[f'{mode}_c{c}_rps_vs_direct']:.2f}× d")
            if r["name"] not in ("direct", "passthrough") and f"{mode}_c{c}_rps_vs_passthrough" in dv:
                extra.append(f"{dv[f'{mode}_c{c}_rps_vs_passthrough']:.2f}× pt")
            if delay_ms and f"{mode}_c{c}_rps_vs_ideal" in dv:
                extra.append(f"{dv[f'{mode}_c{c}_rps_vs_ideal'] * 100:.0f}% of ideal")
            if pt.get("error_total"):
                extra.append(f"{pt['error_total']} err")
            return s + (f" ({', '.join(extra)})" if extra else "")
        return f

    for c in plan["conc"]:
        row(f"RPS non-stream c={c}", rps_cell("nonstream", c))
    for c in plan["stream_conc"]:
        row(f"RPS stream c={c}", rps_cell("stream", c))

    def lat(mode, c, key):
        def f(r, _):
            pt = _pt(r, mode, c)
            return fmt_ms(pt[key] / 1000) if pt else None
        return f

    row("p50 / p99 latency c=1, ms",
        lambda r, _: f"{lat('nonstream', 1, 'p50_us')(r, _)} / {lat('nonstream', 1, 'p99_us')(r, _)}"
        if _pt(r, "nonstream", 1) else None)

    def added(key):
        def f(r, dv):
            if r["name"] == "direct":
                return None
            a = dv.get(f"{key}_vs_direct")
            if a is None:
                return None
            s = f"{a:+.2f}"
            b = dv.get(f"{key}_vs_passthrough")
            if r["name"] != "passthrough" and b is not None:
                s += f" ({b:+.2f} vs pt)"
            return s
        return f

    row("**added p50 c=1 vs direct, ms**", added("added_p50_c1_ms"))
    cmax = max(plan["conc"])
    row(f"p50 / p99 latency c={cmax}, ms",
        lambda r, _: f"{lat('nonstream', cmax, 'p50_us')(r, _)} / {lat('nonstream', cmax, 'p99_us')(r, _)}"
        if _pt(r, "nonstream", cmax) else None)

    def probe(key):
        def f(r, _):
            sp = r.get("stream_probe") or {}
            if not sp.get("n"):
                return None
            return f"{fmt_ms(sp[key]['p50_ms'])} / {fmt_ms(sp[key]['p99_ms'])}"
        return f

    row("stream TTFB p50 / p99 c=1, ms", probe("ttfb"))
    row("stream first `data:` p50 / p99 c=1, ms", probe("first_event"))
    row("**added stream TTFB c=1 vs direct, ms**", added("added_ttfb_c1_ms"))
    row("added first `data:` c=1 vs direct, ms", added("added_first_event_c1_ms"))
    cs = max(plan["stream_conc"])

    def cpu(mode, c):
        def f(r, _):
            pt = _pt(r, mode, c)
            return fmt_int(pt["cpu_us_per_req"]) if pt and "cpu_us_per_req" in pt else None
        return f

    row(f"CPU µs / request (non-stream c={cmax} / stream c={cs})",
        lambda r, _: f"{cpu('nonstream', cmax)(r, _)} / {cpu('stream', cs)(r, _)}"
        if _pt(r, "nonstream", cmax) else None)

    if any(r.get("store") for r in results):
        def store_where(r, _):
            st = r.get("store")
            if not st:
                return None
            inside = "in" if st["in_system_numbers"] else "not in"
            return f"{st['kind']}, CPU {st['cpus']} (gateway CPU {st['gateway_cpus']}), {st['idle_rss_mb']:.0f} MB {inside} RSS"

        def store_cpu(mode, c):
            def f(r, _):
                pt = _pt(r, mode, c)
                return fmt_int(pt["store_cpu_us_per_req"]) if pt and "store_cpu_us_per_req" in pt else None
            return f

        row("store (redis-server): where, idle RSS", store_where)
        row(f"store CPU µs / request (non-stream c={cmax} / stream c={cs})",
            lambda r, _: f"{store_cpu('nonstream', cmax)(r, _)} / {store_cpu('stream', cs)(r, _)}"
            if r.get("store") and _pt(r, "nonstream", cmax) else None)

    def errs(r, _):
        pts = [x for m in r.get("points", {}).values() for x in m.values()]
        if not pts:
            return None
        return fmt_int(sum(x.get("error_total", 0) for x in pts))

    row("wrk errors (non-2xx + socket), all points", errs)

    def fwd(r, _):
        pts = [x for m in r.get("points", {}).values() for x in m.values() if "upstream_per_response" in x]
        if not pts:
            return None
        return f"{min(x['upstream_per_response'] for x in pts):.2f}"

    row("upstream calls per response (min over points)", fwd)

    def noise(r, _):
        pts = [x for m in r.get("points", {}).values() for x in m.values() if "other_cpu_pct" in x]
        if not pts:
            return None
        return (f"{max(x['other_cpu_pct'] for x in pts):.0f}% / "
                f"{max(x.get('steal_pct', 0) for x in pts):.0f}%")

    row("noise: other procs' CPU / steal, max over points", noise)

    widths = [max(len(str(rw[i])) for rw in rows + [["metric"] + names]) for i in range(len(names) + 1)]
    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(["metric"] + names), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


