"""``/ui``: who may load it, and the page itself rendered by a real headless Chromium.

Chromium is driven over the DevTools protocol (a websocket; ``websockets`` comes
with ``uvicorn[standard]``). The browser test signs in the way a person does:
it loads ``/ui`` with no key, types the admin key into the page, and waits for
the page to draw the ledger of the tasks that the test just ran. Every console
message, uncaught exception and failed load is collected; there must be none.

Set ``TASKGATE_UI_SCREENSHOT=docs/ui.png`` to also write the screenshot there.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from gateway.ledger.keys import for_tenant
from tests.conftest import GatewayProcess, base_config, model_entry
from tests.procs import ManagedProcess

ADMIN_KEY = "ui-admin-key-0001"
TEAM_KEY = "ui-team-key-0001"
TYPES = ("ticket-triage", "summarize", "code-review")


def ui_config(fakes: Any, redis_url: str, auth: bool = True) -> dict[str, Any]:
    sections: dict[str, Any] = {"tasks": {"types": {"ticket-triage": {"price_usd": 0.002}}}}
    if auth:
        sections["auth"] = {"keys": [{"key": TEAM_KEY, "tenant": "team-a"},
                                     {"key": ADMIN_KEY, "tenant": "ops", "admin": True}]}
    return base_config(redis_url, [
        model_entry("gpt-4o-mini", fakes.params("openai")),
        model_entry("claude", fakes.params("bedrock")),
        model_entry("llama", {**fakes.params("ollama"), "input_cost_per_token": 1e-8, "output_cost_per_token": 2e-8}),
    ], **sections)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


# --- who may load /ui ------------------------------------------------------------

@pytest.fixture(scope="module")
def gateway(fakes: Any, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway with auth for this module: the status checks only read, the browser test adds tasks."""
    fakes.reset()
    gw = GatewayProcess(ui_config(fakes, redis_server.url), tmp_path_factory.mktemp("ui")).start()
    yield gw
    gw.stop()


@pytest.mark.parametrize("headers, status", [
    ({}, 401),                                           # an API client with no key
    ({"accept": "application/json"}, 401),
    (bearer("not-a-valid-key"), 401),
    (bearer(TEAM_KEY), 403),                             # a valid key, but not an admin's
    ({**bearer(TEAM_KEY), "accept": "text/html"}, 403),
    (bearer(ADMIN_KEY), 200),
    ({"accept": "text/html,application/xhtml+xml"}, 200),  # a browser's page load: the page asks for a key
])
def test_who_may_load_the_page(gateway: Any, headers: dict[str, str], status: int) -> None:
    resp = httpx.get(f"{gateway.url}/ui", headers=headers)
    assert resp.status_code == status, resp.text
    if status == 200:
        assert resp.headers["content-type"].startswith("text/html")
        assert '<meta name="taskgate-auth" content="on">' in resp.text
        assert "default-src 'none'" in resp.headers["content-security-policy"]
    else:
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("headers, status", [({}, 401), (bearer(TEAM_KEY), 403), (bearer(ADMIN_KEY), 200)])
def test_the_page_data_needs_an_admin_key(gateway: Any, headers: dict[str, str], status: int) -> None:
    resp = httpx.get(f"{gateway.url}/ui/api/context", headers=headers)
    assert resp.status_code == status, resp.text
    if status == 200:
        body = resp.json()
        assert body["tenant"] == "ops" and body["auth"] is True
        assert [t["name"] for t in body["tenants"]] == ["ops", "team-a"]
        assert body["task_types"] == {"ticket-triage": 0.002}


def test_assets_are_code_only_and_nothing_else_is_served(gateway: Any) -> None:
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        resp = httpx.get(f"{gateway.url}/ui/{name}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(kind)
    for path in ("/ui/index.html", "/ui/..%2Fui.py", "/ui/missing.js"):
        assert httpx.get(f"{gateway.url}{path}").status_code == 404
    moved = httpx.get(f"{gateway.url}/ui/", headers=bearer(ADMIN_KEY))
    assert moved.status_code == 308 and moved.headers["location"] == "../ui"


def test_without_auth_the_page_is_open(gateway_factory: Any, fakes: Any, redis_server: Any) -> None:
    gw = gateway_factory(ui_config(fakes, redis_server.url, auth=False))
    page = httpx.get(f"{gw.url}/ui")
    assert page.status_code == 200 and '<meta name="taskgate-auth" content="off">' in page.text
    assert httpx.get(f"{gw.url}/ui/api/context").json()["tenants"] == [{"name": "default", "has_tasks": False}]


def test_the_page_ships_with_the_package_and_loads_nothing_from_outside() -> None:
    import tomllib

    from gateway.edge.ui import STATIC

    pyproject = tomllib.loads(Path(__file__).resolve().parent.parent.joinpath("pyproject.toml").read_text())
    assert "edge/static/*" in pyproject["tool"]["setuptools"]["package-data"]["gateway"]
    assert {p.name for p in STATIC.iterdir()} >= {"index.html", "app.js", "app.css"}
    for p in STATIC.iterdir():
        text = p.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, p
        assert "@import" not in text and "@font-face" not in text and "innerHTML" not in text, p


# --- the page in a real browser ----------------------------------------------------

def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One headless Chromium page, driven over the DevTools protocol."""

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.profile = tempfile.mkdtemp(prefix="taskgate-chromium-")
        self.process = ManagedProcess(
            "chromium", [binary, *self.FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            Path(self.profile, "chromium.log"),
        )
        self.ws: Any = None
        self.events: list[dict[str, Any]] = []
        self._id = 0
        self._stack = contextlib.ExitStack()

    def start(self, timeout: float = 20) -> "Chromium":
        from websockets.sync.client import connect

        port_file = Path(self.profile, "DevToolsActivePort")

        def devtools_port_written() -> bool:  # two lines: the port and the browser's target path
            return port_file.exists() and len(port_file.read_text().split()) == 2

        self.process.start(devtools_port_written, timeout=timeout, interval=0.05)
        try:
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
                page = next(t for t in json.load(resp) if t["type"] == "page")
            self.ws = self._stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10))
            for domain in ("Runtime", "Log", "Page", "Network"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.stop()  # no browser left behind when the fixture never gets to stop it
            raise
        return self

    def call(self, method: str, timeout: float = 15, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            if "method" in msg:
                self.events.append(msg)

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(expression):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}; page text: {self.js('document.body.innerText')}")
            time.sleep(0.1)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, failed loads and error statuses."""
        out = []
        for ev in self.events:
            p = ev["params"]
            if ev["method"] == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('exception', {}).get('description')}")
            elif ev["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning", "assert"):
                out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}")
            elif ev["method"] == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry']['text']} {p['entry'].get('url', '')}")
            elif ev["method"] == "Network.loadingFailed":
                out.append(f"load failed: {p.get('errorText')}")
            elif ev["method"] == "Network.responseReceived" and p["response"]["status"] >= 400:
                out.append(f"HTTP {p['response']['status']}: {p['response']['url']}")
        return out

    def stop(self) -> None:
        self._stack.close()  # the websocket
        self.process.stop()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def chromium() -> Iterator[Chromium]:
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (Debian package 'chromium'), and CI is set")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    browser = Chromium(binary).start()
    yield browser
    browser.stop()


def seed_history(redis_url: str, tenant: str, days: int = 13) -> None:
    """Earlier days' per-type totals, written where the ledger keeps them (``tg:agg:<tenant>:<day>``,
    fields ``type|outcome|field``), so that the chart has a history to draw as well as today's tasks."""
    import redis

    r = redis.Redis.from_url(redis_url)
    today = datetime.now(timezone.utc).date()
    for back in range(1, days + 1):
        day = (today - timedelta(days=back)).strftime("%Y%m%d")
        fields: dict[str, int] = {}
        for n, ttype in enumerate(TYPES):
            wobble = (back * (n + 3)) % 7
            succeeded, failed = 20 + 3 * n + wobble, 2 + (back + n) % 4
            per_task = (40 + 25 * n + 4 * wobble) * 10**6  # pico-dollars
            fields[f"{ttype}|succeeded|tasks"] = succeeded
            fields[f"{ttype}|succeeded|cost_pusd"] = succeeded * per_task
            fields[f"{ttype}|failed|tasks"] = failed
            fields[f"{ttype}|failed|cost_pusd"] = failed * per_task * 2
            fields[f"{ttype}|succeeded|requests"] = fields[f"{ttype}|succeeded|attempts"] = succeeded * (n + 1)
            fields[f"{ttype}|failed|requests"] = fields[f"{ttype}|failed|attempts"] = failed * (n + 2)
        r.hset(for_tenant(tenant).agg(day), mapping=fields)
    r.close()


def run_tasks(url: str, key: str) -> dict[str, float]:
    """A few tasks of each type through the openai SDK, on three providers; returns task id -> cost."""
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    models = ("gpt-4o-mini", "claude", "llama")
    for i in range(9):
        task_id, ttype = f"ui-task-{i:02d}", TYPES[i % 3]
        for j in range(1 + i % 3):
            client.chat.completions.create(
                model=models[(i + j) % 3], messages=[{"role": "user", "content": "Summarise ticket #%d " % i * (i + 1)}],
                extra_headers={"X-Task-Id": task_id, "X-Task-Type": ttype})
        outcome = "failed" if i in (4, 8) else "succeeded"
        httpx.post(f"{url}/v1/tasks/{task_id}/complete", json={"outcome": outcome}, headers=bearer(key)).raise_for_status()
    tasks = httpx.get(f"{url}/v1/tasks", params={"limit": 50}, headers=bearer(key)).json()["data"]
    return {t["task_id"]: t["cost_usd"] for t in tasks}


def test_the_page_renders_the_ledger_in_a_browser(gateway: Any, chromium: Chromium, redis_server: Any,
                                                   tmp_path: Path) -> None:
    seed_history(gateway_store_url(gateway), "team-a")
    costs = run_tasks(gateway.url, TEAM_KEY)
    chromium.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

    # a person opens /ui: no key yet, so the page asks for one
    chromium.call("Page.navigate", url=f"{gateway.url}/ui")
    chromium.wait_for("document.readyState === 'complete' && !document.getElementById('signin').hidden")
    chromium.js("document.getElementById('key').focus()")
    chromium.call("Input.insertText", text=ADMIN_KEY)
    chromium.js("document.querySelector('#signin-form button').click()")
    chromium.wait_for("!document.getElementById('dashboard').hidden "
                      "&& document.querySelectorAll('#tasks tbody td.id').length > 0")
    assert chromium.js("sessionStorage.getItem('taskgate.key')") == ADMIN_KEY
    assert chromium.js("document.getElementById('tenant').value") == "team-a"  # the tenant that has tasks

    shown = chromium.js("[...document.querySelectorAll('#tasks tbody td.id')].map(td => td.textContent)")
    assert [costs[t] for t in shown] == sorted(costs.values(), reverse=True)[:len(shown)], (shown, costs)
    text = chromium.js("document.body.innerText")
    for ttype in TYPES:
        assert ttype in chromium.js("document.getElementById('legend-cost').innerText")
        assert ttype in chromium.js("document.getElementById('types').innerText")
    for provider in ("openai", "bedrock", "ollama_chat"):
        assert provider in chromium.js("document.getElementById('chart-providers').textContent"), text
    # a point per type per day: 13 seeded days plus today
    assert chromium.js("document.querySelectorAll('#chart-cost circle').length") == 14 * len(TYPES)
    assert chromium.js("document.querySelectorAll('#chart-cost polyline').length") == len(TYPES)
    # the model chart: one bar per task type x model path that has a success, at the API's cost per success
    by_model = httpx.get(f"{gateway.url}/v1/reports/models", headers=bearer(TEAM_KEY)).json()["data"]
    want = sorted((r["task_type"], r["model_path"], r["cost_per_succeeded_job_usd"]) for r in by_model
                  if r["cost_per_succeeded_job_usd"] is not None)
    bars = chromium.js("[...document.querySelectorAll('#chart-models rect.model-bar')]"
                       ".map(b => [b.dataset.type, b.dataset.path, b.dataset.cost, b.getAttribute('width')])")
    assert sorted((t, p, c) for t, p, c, _ in bars) == want and len(want) >= len(TYPES)
    assert all(float(w) >= 2 for *_, w in bars)
    for ttype in TYPES:
        assert ttype in chromium.js("document.getElementById('chart-models').textContent")
    assert "Could not" not in text
    # the page sums exact decimal strings as BigInt pico-dollars, never floats (0.1 + 0.2 != 0.3 in floats)
    assert chromium.js("String(window.taskgateMoney.picoSum(['0.1', '0.2', '1234567.891234567891']))") == \
        "1234568191234567891"
    assert chromium.js("String(window.taskgateMoney.pico('-0.000000000001'))") == "-1"

    height = chromium.js("Math.ceil(document.documentElement.scrollHeight)")
    shot = chromium.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1})
    png = base64.b64decode(shot["data"])
    (tmp_path / "ui.png").write_bytes(png)
    if os.environ.get("TASKGATE_UI_SCREENSHOT"):
        Path(os.environ["TASKGATE_UI_SCREENSHOT"]).write_bytes(png)
    assert png.startswith(b"\x89PNG") and len(png) > 20_000

    assert chromium.problems() == []


def gateway_store_url(gw: Any) -> str:
    import yaml

    return yaml.safe_load(gw.config_path.read_text())["store"]["url"]
