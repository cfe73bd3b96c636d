"""Metrics, the Prometheus rules and the Grafana dashboard, against a real Prometheus.

- ``promtool`` accepts rules.yml and the example prometheus.yml, and the alerts
  fire (and stay quiet) on synthetic series (``promtool test rules``).
- A real Prometheus scrapes a real ``taskgate serve --workers 2`` every second
  with rules.yml loaded, while tasks run through the fake upstreams via the
  openai SDK; its cost-per-succeeded-task recording rule then equals the
  ledger's ``GET /v1/reports/tasks``.
- Every expression in rules.yml and in the dashboard runs on that Prometheus and
  names only series that the gateway exports or that rules.yml records.
- No label value is unbounded: many task ids, task types, users and request ids
  leave no trace in the labels, and the series stay bounded.

Prometheus and promtool come from the Debian package ``prometheus``. Without
them these tests skip, unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.accounting.metrics import TASK_TYPE_CAP, Metrics
from tests.conftest import ROOT, GatewayProcess, base_config, free_port, model_entry
from tests.procs import ManagedProcess, http_status

RULES = ROOT / "config" / "prometheus" / "rules.yml"
EXAMPLE = ROOT / "config" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "config" / "grafana" / "taskgate.json"
DOCS = ROOT / "docs" / "OBSERVABILITY.md"

SCRAPE_S = 1.0
WORKERS = 2
TYPES = ("ticket-triage", "summarize")
KEYS = {"team": "obs-team-key-0001", "warmup": "obs-warmup-key-0001", "admin": "obs-admin-key-0001"}
# Grafana's variables, as a test dashboard would set them
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$job": ".+", "$task_type": ".+"}


def binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed (Debian package 'prometheus'), and CI is set")
    pytest.skip(f"{name} is not installed (apt-get install -y prometheus)")


# --- reading rules.yml, the dashboard and /metrics --------------------------------

def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every panel target, with Grafana's variables filled in."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for t in panel.get("targets", []):
            out.append((panel["title"], grafana_vars(t["expr"])))
    return out


def grafana_vars(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
            "bool", "inf", "nan", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
            "count_values", "bottomk", "topk", "quantile"}


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads (not its functions, keywords, labels or strings)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[m.end():].lstrip().startswith("(") or m.group().lower() in KEYWORDS:
            continue  # a function call or an operator
        names.add(m.group())
    return names


def declared_series() -> set[str]:
    """Every series name the gateway's metrics can produce, from a fresh registry."""
    names = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        names |= {family.name + s for s in suffixes[family.type]}
    return names


def scrape(url: str) -> list[Any]:
    return list(text_string_to_metric_families(httpx.get(f"{url}/metrics").text))


# --- a Prometheus server of our own ----------------------------------------------

class Prometheus:
    """``prometheus`` on a free port with its own TSDB, scraping ``targets`` with rules.yml loaded."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        cfg = yaml.safe_load(EXAMPLE.read_text())  # the example config, with test-only intervals
        cfg["global"] = {"scrape_interval": f"{SCRAPE_S:g}s", "scrape_timeout": f"{SCRAPE_S:g}s",
                         "evaluation_interval": "1s"}
        cfg["rule_files"] = [str(RULES)]
        cfg["scrape_configs"] = [{**cfg["scrape_configs"][0], "static_configs": [{"targets": targets}]}]
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.process = ManagedProcess(
            "prometheus",
            [binary("prometheus"), f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            workdir / "prometheus.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> "Prometheus":
        self.process.start(http_status(f"{self.url}/-/ready"), timeout=timeout)
        return self

    def query(self, expr: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def wait_for(self, expr: str, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not (result := self.query(expr)):
            assert time.monotonic() < deadline, f"no result for {expr}"
            time.sleep(0.2)
        return result

    def stop(self) -> None:
        self.process.stop()


# --- promtool ---------------------------------------------------------------------

def test_promtool_accepts_the_rules_and_the_example_config() -> None:
    promtool = binary("promtool")
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([promtool, "check", "config", str(EXAMPLE)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rule_names_follow_the_conventions() -> None:
    for rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"taskgate:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
        else:
            assert re.fullmatch(r"Taskgate[A-Za-z]+", rule["alert"]) and rule["labels"]["severity"], rule
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        # every aggregation keeps `job` (one fleet's numbers never mix with another's) and drops `instance`
        for agg in re.findall(r"\b(?:sum|min|max) by \(([^)]*)\)", rule["expr"]):
            labels = {label.strip() for label in agg.split(",")}
            assert "job" in labels and "instance" not in labels, (rule.get("record") or rule["alert"], agg)


PROMTOOL_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  # Two replicas. Every minute replica a ends 2 succeeded tasks costing 0.25 USD in all and 2 failed ones
  # costing 0.5; replica b ends 2 succeeded ones costing 0.25 and 2 abandoned ones costing 1. Cost per
  # succeeded task is all of it (2 USD) over the 4 successes: 0.5. Success rate: 4 of 8.
  # (Binary fractions keep the arithmetic exact.)
  - interval: 1m
    input_series:
      - series: 'taskgate_task_cost_usd_sum{{job="tg", instance="a", task_type="triage", outcome="succeeded"}}'
        values: '0+0.25x120'
      - series: 'taskgate_task_cost_usd_count{{job="tg", instance="a", task_type="triage", outcome="succeeded"}}'
        values: '0+2x120'
      - series: 'taskgate_task_cost_usd_sum{{job="tg", instance="a", task_type="triage", outcome="failed"}}'
        values: '0+0.5x120'
      - series: 'taskgate_task_cost_usd_count{{job="tg", instance="a", task_type="triage", outcome="failed"}}'
        values: '0+2x120'
      - series: 'taskgate_task_cost_usd_sum{{job="tg", instance="b", task_type="triage", outcome="succeeded"}}'
        values: '0+0.25x120'
      - series: 'taskgate_task_cost_usd_count{{job="tg", instance="b", task_type="triage", outcome="succeeded"}}'
        values: '0+2x120'
      - series: 'taskgate_task_cost_usd_sum{{job="tg", instance="b", task_type="triage", outcome="abandoned"}}'
        values: '0+1x120'
      - series: 'taskgate_task_cost_usd_count{{job="tg", instance="b", task_type="triage", outcome="abandoned"}}'
        values: '0+2x120'
      # a type that never succeeds: no cost per success, success rate 0
      - series: 'taskgate_task_cost_usd_sum{{job="tg", instance="a", task_type="doomed", outcome="failed"}}'
        values: '0+0.5x120'
      - series: 'taskgate_task_cost_usd_count{{job="tg", instance="a", task_type="doomed", outcome="failed"}}'
        values: '0+1x120'
      # spend: 0.5 USD a minute on openai over two replicas (30 an hour); a quarter of it wasted on retries
      - series: 'taskgate_cost_usd_total{{job="tg", instance="a", provider="openai", model="gpt"}}'
        values: '0+0.25x120'
      - series: 'taskgate_cost_usd_total{{job="tg", instance="b", provider="openai", model="gpt"}}'
        values: '0+0.25x120'
      - series: 'taskgate_waste_usd_total{{job="tg", instance="a", reason="retry"}}'
        values: '0+0.125x120'
    promql_expr_test:
      - expr: taskgate:cost_per_succeeded_task_usd:ratio1h
        eval_time: 90m
        exp_samples:
          - labels: 'taskgate:cost_per_succeeded_task_usd:ratio1h{{job="tg", task_type="triage"}}'
            value: 0.5
      - expr: taskgate:task_success:ratio1h
        eval_time: 90m
        exp_samples:
          - labels: 'taskgate:task_success:ratio1h{{job="tg", task_type="triage"}}'
            value: 0.5
          - labels: 'taskgate:task_success:ratio1h{{job="tg", task_type="doomed"}}'
            value: 0
      - expr: round(taskgate:cost_usd_per_hour:rate5m, 0.001)
        eval_time: 90m
        exp_samples:
          - labels: '{{job="tg", provider="openai", model="gpt"}}'
            value: 30
      - expr: taskgate:waste:ratio1h
        eval_time: 90m
        exp_samples:
          - labels: 'taskgate:waste:ratio1h{{job="tg"}}'
            value: 0.25

  # Budgets: tenant acme's daily budget runs out (the replicas refresh at different moments);
  # tenant slow burns 2 USD a minute from 500, and at that pace is out within 4 hours.
  - interval: 1m
    input_series:
      - series: 'taskgate_budget_remaining_usd{{job="tg", instance="a", tenant="acme", period="day"}}'
        values: '5 3 1 0 0 0 0 0'
      - series: 'taskgate_budget_remaining_usd{{job="tg", instance="b", tenant="acme", period="day"}}'
        values: '5 4 2 1 0 0 0 0'
      - series: 'taskgate_budget_remaining_usd{{job="tg", instance="a", tenant="slow", period="month"}}'
        values: '500-2x60'
      - series: 'taskgate_budget_remaining_usd{{job="tg", instance="a", tenant="rich", period="month"}}'
        values: '1000x60'
    alert_rule_test:
      - alertname: TaskgateBudgetExhausted
        eval_time: 6m
        exp_alerts:
          - exp_labels: {{severity: critical, job: tg, tenant: acme, period: day}}
            exp_annotations:
              summary: "Tenant acme has used up its day budget"
              description: "0.00 USD left. The gateway answers this tenant's requests with 429 budget_exceeded until the day budget renews."
      - alertname: TaskgateBudgetBurningFast
        eval_time: 30m
        exp_alerts:
          - exp_labels: {{severity: warning, job: tg, tenant: slow, period: month}}
            exp_annotations:
              summary: "Tenant slow will run out of its month budget within 4 hours"
              description: "At the pace of the last hour, the month budget of tenant slow reaches zero within 4 hours."

  # Upstream errors: 30% of openai's attempts fail; bedrock's few failures are too little traffic to page.
  # Job tg spends and finishes nothing; job ok finishes tasks.
  - interval: 1m
    input_series:
      - series: 'taskgate_requests_total{{job="tg", instance="a", provider="openai", model="gpt", status="200"}}'
        values: '0+10x60'
      - series: 'taskgate_upstream_errors_total{{job="tg", instance="a", provider="openai", reason="server_error"}}'
        values: '0+3x60'
      - series: 'taskgate_requests_total{{job="tg", instance="a", provider="bedrock", model="claude", status="200"}}'
        values: '0+0.1x60'
      - series: 'taskgate_upstream_errors_total{{job="tg", instance="a", provider="bedrock", reason="server_error"}}'
        values: '0+0.1x60'
      - series: 'taskgate_tasks_total{{job="tg", instance="a", task_type="triage", outcome="failed"}}'
        values: '0+1x60'
      - series: 'taskgate_requests_total{{job="ok", instance="c", provider="openai", model="gpt", status="200"}}'
        values: '0+10x60'
      - series: 'taskgate_tasks_total{{job="ok", instance="c", task_type="triage", outcome="succeeded"}}'
        values: '0+1x60'
    alert_rule_test:
      - alertname: TaskgateUpstreamErrorRateHigh
        eval_time: 30m
        exp_alerts:
          - exp_labels: {{severity: warning, job: tg, provider: openai}}
            exp_annotations:
              summary: "30% of calls to openai fail"
              description: "More than 10% of upstream attempts to openai failed over the last 5 minutes. Retries and fallbacks cost money: see taskgate:waste_usd:increase1h."
      - alertname: TaskgateNoSuccessfulTasks
        eval_time: 40m
        exp_alerts:
          - exp_labels: {{severity: critical, job: tg}}
            exp_annotations:
              summary: "Requests flow through tg but no task has succeeded for 30 minutes"
              description: "Money is being spent and nothing is being finished. Check the upstreams, the clients' completion calls (POST /v1/tasks/{{id}}/complete) and recent deploys."
"""


def test_alerts_fire_on_synthetic_series(tmp_path: Path) -> None:
    tests = tmp_path / "rules_test.yml"
    tests.write_text(PROMTOOL_TESTS.format(rules=json.dumps(str(RULES))))
    out = subprocess.run([binary("promtool"), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# --- a live gateway with two workers, scraped by Prometheus ------------------------

def gateway_config(fakes: Any, redis_url: str) -> dict[str, Any]:
    priced = {"input_cost_per_token": 2.5e-7, "output_cost_per_token": 1e-6}
    return base_config(redis_url, [
        model_entry("gpt-4o-mini", {**fakes.params("openai"), **priced, "max_retries": 1}, id="oa"),
        model_entry("gpt-4o-mini", {**fakes.params("vllm"), "input_cost_per_token": 1e-8,
                                    "output_cost_per_token": 1e-8}, id="vllm"),
        model_entry("local", fakes.params("ollama"), id="ollama"),  # no price: unpriced
    ], auth={"keys": [{"key": KEYS["team"], "tenant": "team-a"}, {"key": KEYS["warmup"], "tenant": "warmup"},
                      {"key": KEYS["admin"], "tenant": "ops", "admin": True}]},
        budgets={"tenants": {"team-a": {"daily_usd": 5}}},
        tasks={"types": {"ticket-triage": {"price_usd": 0.01}}})


def run_task(url: str, key: str, task_id: str, task_type: str, local: bool = False) -> None:
    """One task's calls the way a client makes them (openai SDK): a call, then a streamed call."""
    import openai

    headers = {"X-Task-Id": task_id, "X-Task-Type": task_type}
    with openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, default_headers=headers) as client:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"Triage ticket {task_id}, please."}])
        stream = client.chat.completions.create(
            model="local" if local else "gpt-4o-mini", messages=[{"role": "user", "content": "Now summarise it."}],
            stream=True, stream_options={"include_usage": True})
        for _ in stream:
            pass


def complete(url: str, key: str, task_id: str, outcome: str) -> None:
    resp = httpx.post(f"{url}/v1/tasks/{task_id}/complete", json={"outcome": outcome},
                      headers={"authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text


def run_batch(url: str, key: str, prefix: str, fakes: Any = None) -> None:
    """Per task type: 3 succeeded and 2 failed tasks. With ``fakes``, one call is retried after a 500
    and one falls back to the second deployment after two.

    The tasks are completed after all their calls: under --workers N a completion that reaches another
    worker right after a response can overtake that response's ledger record (still queued in the first
    worker's writer); that is a ledger matter, not what these tests are about.
    """
    outcomes = {}
    for ttype in TYPES:
        for i, outcome in enumerate(("succeeded", "failed", "succeeded", "failed", "succeeded")):
            if fakes is not None and ttype == TYPES[0] and i in (1, 2):
                fakes.openai.fail("500", times=i)
            task_id = f"{prefix}-{ttype}-{i}"
            outcomes[task_id] = outcome
            run_task(url, key, task_id, ttype, local=(i == 4))
    time.sleep(0.2)
    for task_id, outcome in outcomes.items():
        complete(url, key, task_id, outcome)


@pytest.fixture(scope="module")
def live(fakes: Any, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A gateway (2 workers) that ran tasks, scraped by a Prometheus with rules.yml.

    Prometheus only sees a counter's increase after the series exists: a series born between two
    scrapes loses its first value, as in production after a restart. So a warm-up tenant first ends
    tasks of every type and outcome (that tenant's ledger is separate), then Prometheus starts, and
    then tenant team-a runs the tasks that are compared with team-a's ledger.
    """
    binary("prometheus")
    fakes.reset()
    workdir = tmp_path_factory.mktemp("observability")
    multiproc = workdir / "metrics"  # where each worker keeps its metrics; /metrics sums them
    multiproc.mkdir()
    gw = GatewayProcess(gateway_config(fakes, redis_server.url), workdir, workers=WORKERS,
                        env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc)}).start()
    prom = Prometheus(workdir, [f"127.0.0.1:{gw.port}"])
    try:
        run_batch(gw.url, KEYS["warmup"], "warm")
        prom.start()
        prom.wait_for("count_over_time(taskgate_build_info[1m]) >= 2")  # a baseline of a few scrapes
        run_batch(gw.url, KEYS["team"], "main", fakes)
        yield {"gateway": gw, "prometheus": prom, "traffic_done": time.monotonic(), "multiproc": multiproc}
    finally:
        prom.stop()
        gw.stop()
        fakes.reset()


def test_cost_per_succeeded_task_in_prometheus_equals_the_ledger(live: dict[str, Any]) -> None:
    gw, prom = live["gateway"], live["prometheus"]
    report = httpx.get(f"{gw.url}/v1/reports/tasks", headers={"authorization": f"Bearer {KEYS['team']}"}).json()
    ledger = {row["task_type"]: row for row in report["task_types"]}
    assert set(ledger) == set(TYPES) and all(row["succeeded"] == 3 and row["failed"] == 2 for row in ledger.values())
    assert ledger[TYPES[0]]["attempts"] > ledger[TYPES[0]]["requests"]  # the retry and the fallback were billed
    # both workers served calls (each keeps a histogram file of its own), so the sums span workers
    served = {f.stem.rsplit("_", 1)[1] for f in live["multiproc"].glob("histogram_*.db")}
    assert len(served) == WORKERS, served

    def prometheus_values() -> dict[tuple[str, str], float]:
        out = {}
        for name in ("taskgate:cost_per_succeeded_task_usd:ratio1h", "taskgate:cost_per_succeeded_task_usd:ratio1d",
                     "taskgate:task_success:ratio1h", "taskgate:task_success:ratio1d"):
            for sample in prom.query(name):
                out[(name, sample["metric"]["task_type"])] = float(sample["value"][1])
        return out

    expected = {}
    for ttype, row in ledger.items():
        for window in ("1h", "1d"):
            expected[(f"taskgate:cost_per_succeeded_task_usd:ratio{window}", ttype)] = row["cost_per_succeeded_task_usd"]
            expected[(f"taskgate:task_success:ratio{window}", ttype)] = row["success_rate"]

    # one scrape brings the last completions in, one rule evaluation (every 1 s here) records them;
    # the rest is slack for a busy machine (it takes about a second)
    deadline = live["traffic_done"] + 2 * SCRAPE_S + 8
    while True:
        got = prometheus_values()
        # the ledger counts whole pico-dollars: cost per succeeded task is rounded down to one
        if set(got) == set(expected) and all(math.isclose(got[k], v, rel_tol=1e-9, abs_tol=1e-12)
                                             for k, v in expected.items()):
            break
        assert time.monotonic() < deadline, f"Prometheus {got} != ledger {expected}"
        time.sleep(0.2)


def test_cost_per_success_by_task_type_and_model_equals_the_ledger(live: dict[str, Any]) -> None:
    """taskgate:cost_per_success_usd:by_task_type_model against team-a's tasks grouped by their public
    models (one model, or 'mixed')."""
    gw, prom = live["gateway"], live["prometheus"]
    tasks = httpx.get(f"{gw.url}/v1/tasks", params={"limit": 200},
                      headers={"authorization": f"Bearer {KEYS['team']}"}).json()["data"]
    totals: dict[tuple[str, str], list[int]] = {}
    for t in tasks:
        models = {m["model"] for m in t["models"]}
        key = (t["task_type"], models.pop() if len(models) == 1 else "mixed" if models else "none")
        cost, wins = totals.setdefault(key, [0, 0])
        totals[key] = [cost + t["cost_picousd"], wins + (t["status"] == "succeeded")]
    expected = {k: cost / wins / 1e12 for k, (cost, wins) in totals.items() if wins}
    assert {m for _, m in expected} == {"gpt-4o-mini", "mixed"}
    deadline = live["traffic_done"] + 2 * SCRAPE_S + 8
    while True:
        got = {(s["metric"]["task_type"], s["metric"]["model"]): float(s["value"][1])
               for s in prom.query("taskgate:cost_per_success_usd:by_task_type_model")}
        if set(got) == set(expected) and all(math.isclose(got[k], v, rel_tol=1e-9, abs_tol=1e-12)
                                             for k, v in expected.items()):
            break
        assert time.monotonic() < deadline, f"Prometheus {got} != ledger {expected}"
        time.sleep(0.2)


def test_every_rule_and_panel_expression_runs_and_reads_exported_series(live: dict[str, Any]) -> None:
    gw, prom = live["gateway"], live["prometheus"]
    exposed = {s.name for family in scrape(gw.url) for s in family.samples}
    known = declared_series() | exposed | recorded_names()
    assert exposed <= declared_series(), exposed - declared_series()

    exprs = [(r.get("record") or r["alert"], r["expr"]) for r in rules()] + dashboard_exprs()
    for panel in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        if panel["type"] == "query":  # label_values(<selector>, <label>): its selector must read real series
            selector = re.fullmatch(r"label_values\((.*), *\w+\)", panel["query"]).group(1)
            exprs.append((f"variable {panel['name']}", grafana_vars(selector)))
    read = set()
    for where, expr in exprs:
        prom.query(expr)  # Prometheus accepts it and evaluates it
        names = metric_names(expr)
        assert names, (where, expr)
        assert names <= known, f"{where} reads series nobody exports: {names - known}"
        read |= names
    # the parser really found the series (not keywords or functions)
    assert {"taskgate_task_cost_usd_sum", "taskgate_cost_usd_total", "taskgate_budget_remaining_usd",
            "taskgate:cost_per_succeeded_task_usd:ratio1h"} <= read

    # every recording rule has data for the traffic above, and every rule evaluates without error
    for name in recorded_names():
        prom.wait_for(name, timeout=5)
    groups = httpx.get(f"{prom.url}/api/v1/rules").json()["data"]["groups"]
    assert [(r["name"], r["lastError"]) for g in groups for r in g["rules"] if r["health"] != "ok"] == []


def test_the_dashboard_is_importable() -> None:
    board = json.loads(DASHBOARD.read_text())
    ds = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
    assert len(titles) == len(set(titles))
    used = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
    for panel in board["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == ds and panel["description"], panel["title"]
        assert panel["targets"] and all(t["datasource"] == ds and t["expr"] for t in panel["targets"])
    for series in ("taskgate:cost_per_succeeded_task_usd:ratio1h", "taskgate:cost_usd_per_hour:rate5m",
                   "taskgate:waste_usd:increase1h", "taskgate:task_success:ratio1h", "taskgate_budget_remaining_usd",
                   "taskgate_request_duration_seconds_bucket", "taskgate_time_to_first_token_seconds_bucket",
                   "taskgate_policy_decisions_total", "taskgate_unpriced_requests_total", "taskgate_in_flight_requests",
                   "taskgate:tokens:rate5m", "taskgate:cost_per_success_usd:by_task_type_model"):
        assert series in used, f"no panel shows {series}"
    assert 'decision=~"deny|' in used


# --- labels stay bounded -------------------------------------------------------------

def test_no_label_value_is_unbounded(clean_fakes: Any, redis_server: Any, gateway_factory: Any) -> None:
    secret = "card-secret-key-" + uuid.uuid4().hex
    cfg = base_config(redis_server.url, [model_entry("gpt-4o-mini", clean_fakes.params("openai"))],
                      auth={"keys": [{"key": secret, "tenant": "card"}]})
    gw = gateway_factory(cfg, workers=WORKERS)
    auth = {"authorization": f"Bearer {secret}"}
    types = [f"type-{i:03d}" for i in range(WORKERS * TASK_TYPE_CAP + 20)]  # more than every worker's cap
    unbounded: set[str] = {secret}

    # no keep-alive: every request opens a new connection, so both workers serve some
    client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))

    def one(i: int) -> set[str]:
        task_id, user, model = (f"{kind}-{uuid.uuid4().hex}" for kind in ("card-task", "user", "no-such-model"))
        seen = {task_id, user, model}
        headers = {**auth, "x-task-type": types[i % len(types)]}
        if i % 4 == 0:  # a task the client ends; the others have no task id: one-request tasks
            headers["x-task-id"] = task_id
            to_complete.append((task_id, "failed" if i % 8 == 0 else "succeeded"))
        body = {"model": "gpt-4o-mini", "user": user, "messages": [{"role": "user", "content": f"ticket {i}"}]}
        resp = client.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers)
        assert resp.status_code == 200, resp.text
        seen |= {resp.headers["x-request-id"], resp.headers["x-task-id"]}
        if i % 10 == 0:
            miss = client.post(f"{gw.url}/v1/chat/completions", headers=headers, json={**body, "model": model})
            assert miss.status_code == 404, miss.text
        return seen

    def end(task: tuple[str, str]) -> None:
        done = client.post(f"{gw.url}/v1/tasks/{task[0]}/complete", json={"outcome": task[1]}, headers=auth)
        assert done.status_code == 200, done.text

    to_complete: list[tuple[str, str]] = []
    with client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        for seen in pool.map(one, range(len(types) + 10)):
            unbounded |= seen
        time.sleep(0.2)  # calls first, completions after (see run_batch)
        list(pool.map(end, to_complete))

    families = scrape(gw.url)
    allowed = {"model", "provider", "status", "type", "task_type", "outcome", "reason", "policy", "decision",
               "tenant", "period", "version", "python", "litellm", "le", "api", "actor"}
    task_types: set[str] = set()
    for family in families:
        label_sets = {tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")) for s in family.samples}
        for s in family.samples:
            assert set(s.labels) <= allowed, (s.name, s.labels)
            assert s.labels.get("api", "chat") in {"chat", "responses", "messages", "embeddings", "other"}, s.labels
            assert s.labels.get("actor", "human") in {"human", "agent"}, s.labels
            for value in s.labels.values():
                assert not any(u in value for u in unbounded), (s.name, value)
                assert not re.search(r"[0-9a-f]{16}", value), (s.name, value)  # no id-like value at all
            task_types.add(s.labels.get("task_type", "other"))
        if any("task_type" in dict(ls) for ls in label_sets):
            # each worker keeps its first TASK_TYPE_CAP types and counts the rest as "other"
            assert len(label_sets) <= (WORKERS * TASK_TYPE_CAP + 1) * 3, family.name
        else:
            assert len(label_sets) <= 16, (family.name, label_sets)  # independent of the traffic
    assert "other" in task_types and len(task_types) <= WORKERS * TASK_TYPE_CAP + 1
    assert not any(secret in line for line in httpx.get(f"{gw.url}/metrics").text.splitlines())


# --- the documentation ---------------------------------------------------------------

def test_the_docs_describe_every_series_and_rule() -> None:
    text = DOCS.read_text()
    for family in Metrics().registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in text, f"docs/OBSERVABILITY.md does not describe {name}"
    for rule in rules():
        assert f"`{rule.get('record') or rule['alert']}`" in text, f"docs/OBSERVABILITY.md does not describe {rule}"
    for otel in ("gen_ai.client.token.usage", "gen_ai.client.operation.duration", "gen_ai.server.time_to_first_token"):
        assert otel in text
