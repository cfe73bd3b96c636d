"""The ASGI application.

Two proxy endpoints form the hot path and are served by plain ASGI handlers
(``POST /v1/chat/completions`` and ``POST /v1/embeddings``). Everything else —
health, models, metrics, tasks — is a FastAPI app (:mod:`gateway.edge.api`) that
this app delegates to. Clients with a lifetime (HTTP pool, Redis, metrics
registry) are built in the lifespan and kept on one :class:`Gateway` value.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import threading
from typing import Any

from gateway.config import load as config_mod
from gateway.accounting.accountant import Accountant
from gateway.config.load import Config
from gateway.errors import GatewayError, internal_error
from gateway.proxy.health import HealthBook
from gateway.edge.http import Receive, Request, Send, headers_of, read_body, send_error, send_json
from gateway.config.reload import ConfigWatcher
from gateway.proxy.router import Router
from gateway.accounting.metrics import Metrics
from gateway.accounting.pricing import Price, cost_picousd, load_price_map, map_keys, price_for
from gateway.ledger.ledger import Ledger
from gateway.proxy.attempts import Schedule
from gateway.proxy.begin import Call, begin, worst_case_usage
from gateway.proxy.unary import unary
from gateway.store.embedded import STORE_URL_ENV, EmbeddedRedis, connect
from gateway.proxy.streaming import stream_chat
from gateway.proxy.transport import UpstreamClient
from providers.base import Deployment, Usage

log = logging.getLogger("taskgate")


class Gateway:
    """The state every request handler needs, built once at startup."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.upstream = UpstreamClient()
        self.ledger: Ledger | None = None
        self.accountant: Accountant | None = None
        self.health: HealthBook | None = None
        self.router = Router(self)
        self.watcher = ConfigWatcher(self)
        self.price_map: dict[str, Any] = {}
        self._prices: dict[str, Price | None] = {}
        self.redis: Any = None
        self._embedded: EmbeddedRedis | None = None

    async def start(self) -> None:
        self.price_map = trimmed_price_map(self.config)
        await self.upstream.start()
        url = self.config.store.url
        if url == "embedded":
            url = os.environ.get(STORE_URL_ENV) or ""
            if not url:  # not started by `taskgate serve`: run our own
                self._embedded = EmbeddedRedis(self.config.store.path)
                url = self._embedded.start()
        self.redis = connect(url)
        self.ledger = Ledger(self.redis, self.config, self.metrics)
        self.accountant = Accountant(self.metrics, self.ledger)
        self.health = HealthBook(self.redis)
        await self.ledger.start()
        try:
            await self.health.start()
        except Exception as exc:  # the store may be down at start: serve anyway (fail-open)
            log.warning("could not read shared deployment health at startup: %s", exc)
            self.health._task = asyncio.create_task(self.health._loop())
        self.watcher.start()

    def swap_config(self, config: Config) -> None:
        """Hot reload: new requests use ``config``; requests in flight keep the one they started with."""
        self.price_map = trimmed_price_map(config)
        self.config = config
        self._prices = {}
        self.upstream.forget_timeouts()
        if self.ledger is not None:
            self.ledger.config = config
            self.ledger.settings = config.tasks

    async def stop(self) -> None:
        self.watcher.stop()
        if self.health is not None:
            await self.health.stop()
        await self.upstream.close()
        if self.ledger is not None:
            await self.ledger.stop()
        if self.redis is not None:
            await self.redis.aclose()
        if self._embedded is not None:
            self._embedded.stop()

    def price(self, dep: Deployment) -> Price | None:
        if dep.id not in self._prices:
            self._prices[dep.id] = price_for(dep, self.price_map)
        return self._prices[dep.id]

    def cost(self, dep: Deployment, usage: Usage, seconds: float) -> int | None:
        price = self.price(dep)
        return None if price is None else cost_picousd(usage, price, seconds)

    async def admit(self, call: Call, schedule: Schedule) -> None:
        """Before the first upstream call: refuse when failing closed, reserve budgets."""
        ledger = self.ledger
        assert ledger is not None
        ledger.check_available()
        if not ledger.budgets_apply(call.tenant.name, call.budget_picousd):
            return
        worst = worst_case_usage(call.body, self.config.budgets.default_max_output_tokens)
        amounts = [cost_picousd(worst, price, dep.timeout)
                   for dep, _ in schedule.items if (price := self.price(dep)) is not None]
        amount = max(amounts, default=0)
        if await ledger.reserve(call.tenant.name, call.task.id, amount, call.budget_picousd, call.period):
            call.reserved_picousd = amount

    async def ready(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False


def trimmed_price_map(config: Config) -> dict[str, Any]:
    """The price-map entries this config can use: the whole map is ~4,000 models and ~5 MB."""
    full = load_price_map()
    return {key: full[key] for dep in config.deployments for key in map_keys(dep) if key in full}


class TaskgateApp:
    def __init__(self, config: Config) -> None:
        self.gateway = Gateway(config)
        self._api: Any = None  # the FastAPI app, built off the start-up path (see _build_api)
        self._api_lock = threading.Lock()
        self.hot = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/chat/completions"): self._chat,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/embeddings"): self._embeddings,
            ("POST", "/v1/route/explain"): self._explain,
        }

    def _build_api(self) -> Any:
        """FastAPI serves only the non-hot endpoints. Importing it costs ~0.2 s, so it is built
        in a thread once the gateway is up (or by the first request that needs it), not before."""
        with self._api_lock:
            if self._api is None:
                from gateway.edge.api import build_api

                self._api = build_api(self.gateway)
        return self._api

    def _warm_up(self) -> None:
        """After start-up: build the API, then hand the memory that start-up freed (the full
        price map, config parsing) back to the OS, so that an idle worker stays small."""
        self._build_api()
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.hot.get((scope["method"], scope["path"]))
            if handler is not None:
                await self._serve(handler, scope, receive, send)
                return
            if scope["path"] in ("/healthz", "/readyz") and scope["method"] == "GET":
                await self._health(scope["path"], send)
                return
            await (self._api or self._build_api())(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _health(self, path: str, send: Send) -> None:
        """``/healthz``: the process is up. ``/readyz``: the store answers and the config is loaded."""
        if path == "/healthz":
            await send_json(send, 200, {"status": "ok"})
        elif await self.gateway.ready():
            await send_json(send, 200, {"status": "ready"})
        else:
            await send_json(send, 503, {"status": "not ready", "store": "unreachable"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    log.error("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
                asyncio.get_running_loop().run_in_executor(None, self._warm_up)
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _serve(self, handler: Any, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        metrics = self.gateway.metrics
        metrics.in_flight.inc()
        req = Request(scope["method"], scope["path"], headers_of(scope), b"")
        try:
            req.body = await read_body(receive, req.headers, self.gateway.config.server.max_body_bytes)
            await handler(req, send, receive)
        except GatewayError as err:
            await _send_error_if_unstarted(send, err, req)
        except Exception:
            log.exception("unhandled error on %s", scope["path"])
            await _send_error_if_unstarted(send, internal_error(), req)
        finally:
            metrics.in_flight.dec()

    async def _chat(self, req: Request, send: Send, receive: Receive) -> None:
        call, decision = await begin(self.gateway, req, "chat")
        if call.body.get("stream") is True:
            await stream_chat(self.gateway, call, decision, send, receive)
        else:
            await unary(self.gateway, call, decision, send)

    async def _embeddings(self, req: Request, send: Send, receive: Receive) -> None:
        call, decision = await begin(self.gateway, req, "embeddings")
        await unary(self.gateway, call, decision, send)

    async def _explain(self, req: Request, send: Send, receive: Receive) -> None:
        """``POST /v1/route/explain``: the same body and headers as a chat request; a dry run."""
        req.dry_run = True
        call, decision = await begin(self.gateway, req, "chat")
        body = decision.explain()
        body["task_id"] = call.task.id
        await send_json(send, 200, body, [(b"x-task-id", call.task.id.encode())])


async def _send_error_if_unstarted(send: Send, err: GatewayError, req: Request) -> None:
    """The error response, unless the response already started (a stream reports in-band;
    the server refuses a second start, which is all this can do then)."""
    headers = [(b"x-task-id", req.task_id.encode())] if req.task_id else []
    try:
        await send_error(send, err, headers)
    except RuntimeError:
        pass


def create_app(config: Config | None = None) -> TaskgateApp:
    """The app factory uvicorn calls (``--factory``); reads ``$TASKGATE_CONFIG``."""
    if config is None:
        config = config_mod.load(config_mod.config_path())
    return TaskgateApp(config)


__all__ = ["Gateway", "TaskgateApp", "create_app"]
