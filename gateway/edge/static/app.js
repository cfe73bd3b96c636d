// Taskgate cost page: reads the gateway's own JSON API and draws it with hand-made SVG.
//
//   ui/api/context      who is signed in, which tenants exist            (admin only)
//   v1/reports/tasks    one call per UTC day for the chart, one for the period
//   v1/tasks            recent tasks: spend by provider, most expensive tasks
//   v1/reports/models   cost per succeeded job by task type x model path
//
// The admin key lives in sessionStorage (this tab only) and goes out as
// `Authorization: Bearer`. Data is only ever put on the page as text.
"use strict";

(function () {
  const KEY = "taskgate.key";
  const TENANT = "taskgate.tenant";
  const DAY = 86400;
  const MAX_TASK_PAGES = 5; // 5 x 200 most recent tasks
  const PALETTE = ["#0b63ce", "#e66100", "#1a9850", "#9c27b0", "#d81b60", "#00838f", "#6d4c41", "#5e35b1",
    "#827717", "#c62828"];
  const SVG = "http://www.w3.org/2000/svg";

  const authRequired = document.querySelector('meta[name="taskgate-auth"]').content === "on";
  const $ = (id) => document.getElementById(id);
  let context = null;
  let loading = 0;

  // --- formatting ------------------------------------------------------------------
  function usd(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a === 0) return "$0";
    if (a >= 100) return "$" + v.toLocaleString("en-US", { maximumFractionDigits: 0 });
    if (a >= 1) return "$" + v.toFixed(2);
    if (a >= 0.01) return "$" + v.toFixed(3);
    const digits = Math.min(12, 2 - Math.floor(Math.log10(a)));
    return "$" + v.toFixed(digits);
  }
  // Exact money: the API gives every amount as a decimal string too (*_exact); sums are BigInt
  // pico-dollars, so the page never adds floats. Only the final display converts to a Number.
  const PICO = 1000000000000n;
  function pico(text) {
    if (text === null || text === undefined) return 0n;
    const s = String(text), neg = s.startsWith("-"), [whole, frac = ""] = (neg ? s.slice(1) : s).split(".");
    const v = BigInt(whole || "0") * PICO + BigInt((frac + "000000000000").slice(0, 12));
    return neg ? -v : v;
  }
  const picoSum = (values) => values.reduce((a, v) => a + pico(v), 0n);
  const fromPico = (p) => Number(p / PICO) + Number(p % PICO) / 1e12;
  window.taskgateMoney = Object.freeze({ pico, picoSum, fromPico }); // for the page's tests
  // axis ticks: the same, without trailing zeros ("$0.000075", not "$0.0000750")
  const usdTick = (v) => usd(v).replace(/(\.\d*?[1-9])0+$/, "$1").replace(/\.0+$/, "");
  const pct = (v) => (v === null || v === undefined) ? "–" : (100 * v).toFixed(v >= 0.995 || v < 0.1 ? 1 : 0) + "%";
  const int = (v) => (v || 0).toLocaleString("en-US");
  const dayLabel = (ts) => new Date(ts * 1000).toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  const when = (ts) => new Date(ts * 1000).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // --- talking to the gateway -------------------------------------------------------
  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function getJSON(path, params) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null) qs.set(k, v);
    const url = path + (qs.toString() ? "?" + qs : "");
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = "Bearer " + key;
    const resp = await fetch(url, { headers, cache: "no-store" });
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const msg = body && body.error ? body.error.message : resp.statusText;
      throw new HttpError(resp.status, msg || ("HTTP " + resp.status));
    }
    return body;
  }

  function setStatus(text, isError) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("error", !!isError);
  }

  // --- sign in -------------------------------------------------------------------------
  function showSignin(message) {
    $("dashboard").hidden = true;
    $("controls").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
    setStatus("");
    $("key").focus();
  }

  async function start() {
    if (authRequired && !sessionStorage.getItem(KEY)) { showSignin(); return; }
    setStatus("Loading…");
    try {
      context = await getJSON("ui/api/context");
    } catch (e) {
      if (e.status === 401) { sessionStorage.removeItem(KEY); showSignin("That key was not accepted."); return; }
      if (e.status === 403) { sessionStorage.removeItem(KEY); showSignin("That key is not an admin key: " + e.message); return; }
      setStatus("Could not reach the gateway: " + e.message, true);
      return;
    }
    $("signin").hidden = true;
    $("controls").hidden = false;
    $("signout").hidden = !authRequired;
    const select = $("tenant");
    select.replaceChildren();
    for (const t of context.tenants) {
      select.append(el("option", { value: t.name }, t.name + (t.has_tasks ? "" : " (no tasks)")));
    }
    const remembered = sessionStorage.getItem(TENANT);
    const names = context.tenants.map((t) => t.name);
    const firstWithTasks = context.tenants.find((t) => t.has_tasks);
    select.value = names.includes(remembered) ? remembered : (firstWithTasks ? firstWithTasks.name : context.tenant);
    await refresh();
  }

  // --- loading the data ---------------------------------------------------------------
  async function refresh() {
    const tenant = $("tenant").value;
    const days = Number($("days").value);
    const mine = ++loading;
    setStatus("Loading " + tenant + "…");
    const now = Date.now() / 1000;
    const today = Math.floor(now / DAY) * DAY;
    const first = today - (days - 1) * DAY;
    try {
      const dayStarts = Array.from({ length: days }, (_, i) => first + i * DAY);
      const [perDay, period, tasks, byModel] = await Promise.all([
        Promise.all(dayStarts.map((d) => getJSON("v1/reports/tasks", { tenant, since: d, until: d + DAY - 0.001 }))),
        getJSON("v1/reports/tasks", { tenant, since: first, until: now }),
        recentTasks(tenant, first),
        getJSON("v1/reports/models", { tenant, since: first, until: now }),
      ]);
      if (mine !== loading) return; // a newer refresh started meanwhile
      $("dashboard").hidden = false; // first, so that the charts can measure their width
      renderStats(period);
      renderCostChart(dayStarts, perDay);
      renderProviders(tasks);
      renderModels(byModel.data);
      renderTypes(period);
      renderTasks(tasks);
      setStatus("");
      $("updated").textContent = "Updated " + new Date().toLocaleTimeString("en-GB") + ".";
    } catch (e) {
      if (mine !== loading) return;
      if (e.status === 401) { sessionStorage.removeItem(KEY); showSignin("The key is no longer accepted."); return; }
      setStatus("Could not load the ledger: " + e.message, true);
    }
  }

  async function recentTasks(tenant, since) {
    const out = [];
    let before = null;
    for (let page = 0; page < MAX_TASK_PAGES; page++) {
      const body = await getJSON("v1/tasks", { tenant, since, limit: 200, before });
      out.push(...body.data);
      if (!body.has_more) break;
      before = body.next_before;
    }
    return out;
  }

  // --- rendering ------------------------------------------------------------------------
  function renderStats(period) {
    const rows = period.task_types;
    const sum = (f) => rows.reduce((a, r) => a + (r[f] || 0), 0);
    const spend = fromPico(picoSum(rows.map((r) => r.cost_usd_exact)));
    const ended = sum("tasks");
    const succeeded = sum("succeeded");
    const waste = fromPico(picoSum(rows.flatMap((r) => Object.values(r.waste_usd_exact || {}))));
    $("stat-spend").textContent = usd(spend);
    $("stat-tasks").textContent = int(ended);
    $("stat-success").replaceChildren(ended ? pct(succeeded / ended) : "–", el("small", {}, int(succeeded) + " of " + int(ended)));
    $("stat-waste").replaceChildren(usd(waste), el("small", {}, spend ? pct(waste / spend) + " of spend" : ""));
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function colorFor(types) {
    const map = new Map();
    [...types].sort().forEach((t, i) => map.set(t, PALETTE[i % PALETTE.length]));
    return map;
  }

  function renderCostChart(dayStarts, perDay) {
    const box = $("chart-cost");
    const legend = $("legend-cost");
    box.replaceChildren();
    legend.replaceChildren();
    const series = new Map(); // task type -> [{i, v, row}]
    perDay.forEach((report, i) => {
      for (const row of report.task_types) {
        if (!series.has(row.task_type)) series.set(row.task_type, []);
        if (row.cost_per_succeeded_task_usd !== null) series.get(row.task_type).push({ i, v: row.cost_per_succeeded_task_usd, row });
      }
    });
    const W = Math.max(box.clientWidth || 800, 480), H = 280;
    const m = { l: 84, r: 16, t: 12, b: 30 };
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Cost per succeeded task by task type and day" });
    const values = [...series.values()].flat().map((p) => p.v);
    const top = niceMax(Math.max(0, ...values) * 1.05);
    const x = (i) => m.l + (dayStarts.length === 1 ? (W - m.l - m.r) / 2 : i * (W - m.l - m.r) / (dayStarts.length - 1));
    const y = (v) => H - m.b - (v / top) * (H - m.t - m.b);
    for (let k = 0; k <= 4; k++) {
      const v = (top * k) / 4;
      root.append(svg("line", { class: "grid", x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
      root.append(svg("text", { x: m.l - 8, y: y(v) + 4, "text-anchor": "end" }, usdTick(v)));
    }
    root.append(svg("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
    const step = Math.ceil(dayStarts.length / Math.max(1, Math.floor((W - m.l - m.r) / 70)));
    dayStarts.forEach((d, i) => {
      if ((dayStarts.length - 1 - i) % step === 0) {
        root.append(svg("text", { x: x(i), y: H - m.b + 18, "text-anchor": "middle" }, dayLabel(d)));
      }
    });
    const colors = colorFor(series.keys());
    for (const [type, points] of series) {
      const color = colors.get(type);
      // a line through consecutive days only; a day without successes leaves a gap
      let run = [];
      const flush = () => {
        if (run.length > 1) {
          root.append(svg("polyline", { class: "series", stroke: color,
            points: run.map((p) => `${x(p.i).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ") }));
        }
        run = [];
      };
      points.forEach((p, k) => { if (k > 0 && p.i !== points[k - 1].i + 1) flush(); run.push(p); });
      flush();
      for (const p of points) {
        const dot = svg("circle", { cx: x(p.i), cy: y(p.v), r: 4.5, fill: color, "data-type": type });
        dot.append(svg("title", {}, `${type}, ${dayLabel(dayStarts[p.i])}: ${usd(p.v)} per succeeded task ` +
          `(${p.row.succeeded} of ${p.row.tasks} tasks succeeded, ${usd(p.row.cost_usd)} spent)`));
        root.append(dot);
      }
      const sw = svg("svg", { viewBox: "0 0 14 14", "aria-hidden": "true" });
      sw.append(svg("rect", { x: 1, y: 1, width: 12, height: 12, rx: 3, fill: color }));
      legend.append(el("li", {}, sw, type));
    }
    if (!values.length) {
      root.append(svg("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" },
        "No task has succeeded in this period yet."));
    }
    box.append(root);
  }

  function renderProviders(tasks) {
    const box = $("chart-providers");
    box.replaceChildren();
    const byProvider = new Map(); // provider -> {cost, models: Map}
    for (const t of tasks) {
      for (const m of t.models || []) {
        const p = m.provider || "unknown";
        if (!byProvider.has(p)) byProvider.set(p, { pico: 0n, models: new Map() });
        const entry = byProvider.get(p);
        entry.pico += pico(m.cost_usd_exact);
        entry.models.set(m.model, (entry.models.get(m.model) || 0n) + pico(m.cost_usd_exact));
      }
    }
    for (const entry of byProvider.values()) {
      entry.cost = fromPico(entry.pico);
      entry.models = new Map([...entry.models.entries()].map(([name, p]) => [name, fromPico(p)]));
    }
    $("provider-hint").textContent = `From the per-model breakdown of the ${int(tasks.length)} most recent tasks started in the period.`;
    const rows = [...byProvider.entries()].sort((a, b) => b[1].cost - a[1].cost);
    const total = fromPico(rows.reduce((a, [, e]) => a + e.pico, 0n));
    const W = Math.max(box.clientWidth || 400, 320), rowH = 46, m = { l: 10, r: 10 };
    const H = Math.max(rows.length, 1) * rowH + 6;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Spend by provider" });
    if (!rows.length) {
      root.append(svg("text", { class: "empty", x: W / 2, y: 28, "text-anchor": "middle" }, "No priced calls yet."));
    }
    const top = Math.max(...rows.map(([, e]) => e.cost), 0) || 1;
    rows.forEach(([provider, e], i) => {
      const y0 = i * rowH + 4;
      const share = total ? e.cost / total : 0;
      root.append(svg("text", { class: "barlabel", x: m.l, y: y0 + 13 }, provider));
      root.append(svg("text", { x: W - m.r, y: y0 + 13, "text-anchor": "end" }, `${usd(e.cost)} · ${pct(share)}`));
      root.append(svg("rect", { x: m.l, y: y0 + 20, width: W - m.l - m.r, height: 14, rx: 4, fill: "#eef0f3" }));
      const bar = svg("rect", { x: m.l, y: y0 + 20, width: Math.max(2, (W - m.l - m.r) * (e.cost / top)), height: 14,
        rx: 4, fill: PALETTE[i % PALETTE.length] });
      const models = [...e.models.entries()].sort((a, b) => b[1] - a[1]).map(([name, c]) => `${name}: ${usd(c)}`);
      bar.append(svg("title", {}, `${provider}\n${models.join("\n")}`));
      root.append(bar);
    });
    box.append(root);
  }

  // One bar per task type x model path: cost per succeeded job (a path with no success has no bar).
  function renderModels(rows) {
    const box = $("chart-models");
    box.replaceChildren();
    const W = Math.max(box.clientWidth || 400, 320), rowH = 40, headH = 22, m = { l: 10, r: 10 };
    const types = [...new Set(rows.map((r) => r.task_type))];
    const H = Math.max(rows.length * rowH + types.length * headH, 40) + 6;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Cost per succeeded job by model path",
      "data-rows": String(rows.length) });
    if (!rows.length) {
      root.append(svg("text", { class: "empty", x: W / 2, y: 26, "text-anchor": "middle" }, "No task has ended in this period yet."));
    }
    const top = Math.max(...rows.map((r) => Number(r.cost_per_succeeded_job_usd || 0)), 0) || 1;
    let y = 4;
    types.forEach((type, ti) => {
      root.append(svg("text", { class: "barlabel", x: m.l, y: y + 14 }, type));
      y += headH;
      for (const r of rows.filter((row) => row.task_type === type)) {
        const cps = r.cost_per_succeeded_job_usd === null ? null : Number(r.cost_per_succeeded_job_usd);
        root.append(svg("text", { x: m.l, y: y + 12 }, r.model_path));
        root.append(svg("text", { x: W - m.r, y: y + 12, "text-anchor": "end" },
          `${cps === null ? "no success" : usd(cps)} · ${int(r.jobs)} jobs · ${pct(r.success_rate)}`));
        root.append(svg("rect", { x: m.l, y: y + 18, width: W - m.l - m.r, height: 12, rx: 4, fill: "#eef0f3" }));
        if (cps !== null) {
          const bar = svg("rect", { class: "model-bar", x: m.l, y: y + 18, rx: 4, height: 12,
            width: Math.max(2, (W - m.l - m.r) * (cps / top)), fill: PALETTE[ti % PALETTE.length],
            "data-path": r.model_path, "data-type": type, "data-cost": r.cost_per_succeeded_job_usd });
          bar.append(svg("title", {}, `${type} · ${r.model_path}\n${usd(cps)} per succeeded job` +
            (r.margin_per_succeeded_job_usd ? `\nmargin ${usd(Number(r.margin_per_succeeded_job_usd))} per success` : "")));
          root.append(bar);
        }
        y += rowH;
      }
    });
    box.append(root);
  }

  function renderTypes(period) {
    const body = $("types").tBodies[0];
    body.replaceChildren();
    const rows = [...period.task_types].sort((a, b) => b.cost_usd - a.cost_usd);
    for (const r of rows) {
      const wasted = fromPico(picoSum(Object.values(r.waste_usd_exact || {})));
      body.append(el("tr", {},
        el("td", {}, r.task_type),
        el("td", { class: "num" }, int(r.tasks)),
        el("td", { class: "num" }, `${int(r.succeeded)} (${pct(r.success_rate)})`),
        el("td", { class: "num" }, usd(r.cost_usd)),
        el("td", { class: "num" }, usd(r.cost_per_succeeded_task_usd)),
        el("td", { class: "num" }, usd(wasted)),
        el("td", { class: "num" }, r.margin_per_succeeded_task_usd === undefined ? "no price set" : usd(r.margin_per_succeeded_task_usd)),
      ));
    }
    if (!rows.length) body.append(el("tr", {}, el("td", { class: "empty", colspan: 7 }, "No task ended in this period.")));
  }

  function renderTasks(tasks) {
    const body = $("tasks").tBodies[0];
    body.replaceChildren();
    const top = [...tasks].sort((a, b) => b.cost_usd - a.cost_usd).slice(0, 10);
    for (const t of top) {
      const models = (t.models || []).map((m) => `${m.model} (${m.provider})`).join(", ");
      body.append(el("tr", {},
        el("td", { class: "id", title: t.task_id }, t.task_id),
        el("td", {}, t.task_type || ""),
        el("td", {}, el("span", { class: "badge " + t.status }, t.status)),
        el("td", { class: "num" }, int(t.requests)),
        el("td", { class: "num" }, `${int(t.input_tokens)} / ${int(t.output_tokens)}`),
        el("td", { class: "num" }, usd(t.cost_usd) + (t.cost_complete ? "" : " +?")),
        el("td", { class: "models" }, models),
        el("td", {}, when(t.created_at)),
      ));
    }
    if (!top.length) body.append(el("tr", {}, el("td", { class: "empty", colspan: 8 }, "No tasks in this period.")));
  }

  // --- wiring --------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const key = $("key").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY, key);
      $("key").value = "";
      start();
    });
    $("signout").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      sessionStorage.removeItem(TENANT);
      showSignin("Signed out.");
    });
    $("tenant").addEventListener("change", () => { sessionStorage.setItem(TENANT, $("tenant").value); refresh(); });
    $("days").addEventListener("change", refresh);
    $("refresh").addEventListener("click", refresh);
    $("controls").addEventListener("submit", (ev) => ev.preventDefault());
    setInterval(() => { if (!$("dashboard").hidden && document.visibilityState === "visible") refresh(); }, 60000);
    start();
  });
})();
