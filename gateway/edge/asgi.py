"""The ASGI application: the HTTP edge of the gateway.

The proxy endpoints form the hot path and are served by plain ASGI handlers,
one per front (``POST /v1/chat/completions``, ``POST /v1/embeddings``).
Everything else — models, metrics, tasks, /ui — is a FastAPI app
(:mod:`gateway.edge.api`) that this app delegates to.

What a handler reads comes from two typed values: the :class:`~gateway.snapshot.Snapshot`
current when the request arrived (the config and what derives from it), and the
:class:`~gateway.services.Services` built in the lifespan (the clients with a lifetime).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any, Awaitable, Callable, Mapping, Protocol

from gateway.accounting.metrics import Metrics
from gateway.config import load as config_mod
from gateway.config.identity import Tenant
from gateway.config.load import Config
from gateway.config.reload import ConfigWatcher
from gateway.edge import agents
from gateway.edge.agents import shutting_down
from gateway.edge.auth import authenticate
from gateway.edge.http import headers_of, parse_json_object, read_body, send_json
from gateway.edge.limits import Concurrency, check_header_bytes
from gateway.errors import GatewayError, internal_error
from gateway.keys import KeyBook
from gateway.fronts.base import ChatFront, EmbeddingsFront, Headers
from gateway.fronts.chat import ChatCompletionsFront
from gateway.fronts.embeddings import OpenAIEmbeddingsFront
from gateway.fronts.messages import MessagesFront
from gateway.fronts.responses import ResponsesFront
from gateway.proxy.attempts import AttemptLoop
from gateway.proxy.begin import begin
from gateway.proxy.call import Call
from gateway.proxy.respond import Receive, Send
from gateway.proxy.router import Router
from gateway.proxy.unary import UnaryEmbeddings
from gateway.services import Services, close_services, open_services
from gateway.snapshot import CurrentSnapshot, build_snapshot
from policies.decide import Decision
from providers.base import Deployment
from providers.redact import strip_userinfo

log = logging.getLogger("taskgate")

CHAT = ChatCompletionsFront()
EMBEDDINGS = OpenAIEmbeddingsFront()
MESSAGES = MessagesFront()
RESPONSES_PREFIX = "/v1/responses/"

Handler = Callable[[Mapping[str, str], bytes, Send, Receive], Awaitable[None]]
# The lifespan shutdown (ledger flush, then spool) never takes longer than this; the ledger
# writer's own flush gives up after 15 s and spools what is left (gateway/ledger/writer.py).
STOP_BOUND_S = 20.0



class ErrorShape(Protocol):
    """How a front's errors look on the wire."""

    def error_response(self, err: GatewayError) -> tuple[int, Headers, bytes]: ...


class TaskgateApp:
    def __init__(self, config: Config) -> None:
        self.snapshots = CurrentSnapshot(build_snapshot(config))
        self.metrics = Metrics()
        self.watcher = ConfigWatcher(lambda: self.snapshots.config, self.apply_config,
                                     lambda result: self.metrics.config_reloads.labels(result).inc())
        self._services: Services | None = None
        self._router: Router | None = None
        self._keys: KeyBook | None = None  # virtual keys in the store (gateway/keys/)
        self._api: Any = None  # the FastAPI app, built off the start-up path (see _build_api)
        self._api_lock = threading.Lock()
        self.draining = False  # set by SIGTERM/SIGINT: /readyz answers 503 from then on
        self.concurrency = Concurrency()  # requests in flight here: server.max_concurrent_requests
        self.hot: dict[tuple[str, str], tuple[Handler, ErrorShape]] = {
            ("POST", "/v1/chat/completions"): (self._chat, CHAT),
            ("POST", "/chat/completions"): (self._chat, CHAT),
            ("POST", "/v1/embeddings"): (self._embeddings, EMBEDDINGS),
            ("POST", "/embeddings"): (self._embeddings, EMBEDDINGS),
            ("POST", "/v1/route/explain"): (self._explain, CHAT),
            ("POST", "/v1/responses"): (self._responses, CHAT),
            ("POST", "/responses"): (self._responses, CHAT),
            ("POST", "/v1/messages"): (self._messages, MESSAGES),
            ("POST", "/v1/messages/count_tokens"): (self._count_tokens, MESSAGES),
        }

    # --- lifetime ------------------------------------------------------------------

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the gateway has not started (lifespan startup did not run)")
        return self._services

    @property
    def router(self) -> Router:
        if self._router is None:
            raise RuntimeError("the gateway has not started (lifespan startup did not run)")
        return self._router

    async def start(self, services: Services | None = None) -> None:
        """Builds the services (or takes the given ones, in tests) and starts watching the config."""
        self._services = services or await open_services(self.snapshots, self.metrics)
        self._router = Router(self._services.health, self.metrics, self._services.ledger.audit,
                              self._services.outcomes)
        self._keys = KeyBook(self._services.store, self.snapshots.config.auth_secret)
        self.watcher.start()

    def apply_config(self, config: Config) -> None:
        """Hot reload: new requests take a snapshot of ``config``; requests in flight keep theirs."""
        self.snapshots.replace(build_snapshot(config))

    async def stop(self) -> None:
        """Flush the ledger (to Redis, or else the local spool) and close the clients, within a bound."""
        self.draining = True
        self.watcher.stop()
        if self._services is not None:
            services, self._services = self._services, None
            try:
                await asyncio.wait_for(close_services(services), STOP_BOUND_S)
            except asyncio.TimeoutError:
                log.error("shutdown did not finish within %.0fs; exiting anyway (spool: %s)", STOP_BOUND_S,
                          self.snapshots.config.spool_dir)

    def watch_signals(self) -> None:
        """Mark the app as draining when the server is told to stop. The server (uvicorn) keeps
        its own handlers, which close the listening sockets and wait up to the drain timeout;
        this one chains in front of them."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: FrameType | None, previous: Callable[..., Any] = previous) -> None:
                if not self.draining:
                    log.info("draining: /readyz answers 503; requests in flight have up to %.0fs",
                             self.snapshots.config.server.drain_timeout_s)
                self.draining = True
                previous(signum, frame)

            signal.signal(sig, handler)

    def _build_api(self) -> Any:
        """FastAPI serves only the non-hot endpoints. Importing it costs ~0.2 s, so it is built
        in a thread once the gateway is up (or by the first request that needs it), not before."""
        with self._api_lock:
            if self._api is None:
                from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

                from gateway.edge.api import build_api

                # X-Forwarded-Proto/-For from a trusted proxy, as uvicorn would apply them to every
                # request (`taskgate serve` turns that off): only the FastAPI endpoints read the
                # client or the scheme, so the hot handlers skip the header scan
                api = build_api(self.snapshots, self.services.ledger, self.metrics, self.authenticate, self.keys)
                self._api = ProxyHeadersMiddleware(api,  # type: ignore[arg-type]
                                                   trusted_hosts=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"))
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
        # What start-up built lives as long as the process: out of the collector's reach, so that
        # a full collection under load walks only what requests made (measured: 36 ms pauses
        # before, which every request in flight waited out)
        gc.freeze()

    # --- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path in ("/healthz", "/readyz") and scope["method"] == "GET":  # exempt from the limits
                await self._health(path, send)
                return
            hot = self.hot.get((scope["method"], path))
            # the limits that protect the process, before authentication (gateway/edge/limits.py)
            server = self.snapshots.config.server
            busy = self.concurrency.busy(server.max_concurrent_requests)
            try:
                if busy is not None:
                    raise busy
                check_header_bytes(scope["headers"], server.max_header_bytes)
            except GatewayError as err:
                await _send_error_if_unstarted(send, hot[1] if hot is not None else CHAT, err)
                return
            self.concurrency.active += 1
            try:
                if hot is not None:
                    await self._serve(hot[0], hot[1], scope, receive, send)
                elif path.startswith(RESPONSES_PREFIX) and scope["method"] in ("GET", "DELETE") \
                        and "/" not in path[len(RESPONSES_PREFIX):]:
                    await self._serve(self._stored_response(scope["method"], path[len(RESPONSES_PREFIX):]), CHAT,
                                      scope, receive, send)
                else:
                    await (self._api or self._build_api())(scope, receive, send)
            finally:
                self.concurrency.active -= 1
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _health(self, path: str, send: Send) -> None:
        """``/healthz``: the process is up. ``/readyz``: the store answers and the config is loaded."""
        if path == "/healthz":
            await send_json(send, 200, {"status": "ok"})
        elif self.draining:
            await send_json(send, 503, {"status": "draining"})
        elif self._services is not None and await self._services.ready():
            await send_json(send, 200, {"status": "ready"})
        else:
            await send_json(send, 503, {"status": "not ready", "store": "unreachable"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.error("startup failed: %s", strip_userinfo(str(exc)))
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self.watch_signals()
                await send({"type": "lifespan.startup.complete"})
                asyncio.get_running_loop().run_in_executor(None, self._warm_up)
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _serve(self, handler: Handler, shape: ErrorShape, scope: dict[str, Any], receive: Receive,
                     send: Send) -> None:
        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            headers = headers_of(scope)
            body = await read_body(receive, headers, self.snapshots.config.server.max_body_bytes)
            await handler(headers, body, send, receive)
        except GatewayError as err:
            await _send_error_if_unstarted(send, shape, err)
        except asyncio.CancelledError:
            # The server cancels requests still running at the drain deadline (its only reason to
            # cancel one); the attempt loop has recorded the attempt in flight. Answer, and end
            # the request quietly: a cancelled ASGI call would be logged as a traceback.
            log.warning("%s cut at the drain deadline (server.drain_timeout_s)", scope["path"])
            await _send_error_if_unstarted(send, shape, shutting_down())
        except Exception:
            log.exception("unhandled error on %s", scope["path"])
            await _send_error_if_unstarted(send, shape, internal_error())
        finally:
            metrics.in_flight.dec()

    @property
    def keys(self) -> KeyBook:
        if self._keys is None:
            raise RuntimeError("the gateway has not started (lifespan startup did not run)")
        return self._keys

    async def authenticate(self, headers: Mapping[str, str]) -> Tenant:
        return await authenticate(headers, self.snapshots.current.config, self._keys)

    # --- the hot handlers: one per front --------------------------------------------------

    async def _begin(self, headers: Mapping[str, str], raw: bytes, front: ChatFront | EmbeddingsFront,
                     explain: bool = False) -> tuple[Call, Decision]:
        """Authenticate and parse here, at the edge; the proxy path takes it from there."""
        snapshot = self.snapshots.current  # this request keeps this snapshot to its end
        tenant = await authenticate(headers, snapshot.config, self._keys)
        return await begin(snapshot, self.router, self.services.ledger, tenant, headers, parse_json_object(raw),
                           front, explain=explain)

    async def _chat(self, headers: Mapping[str, str], body: bytes, send: Send, receive: Receive) -> None:
        call, decision = await self._begin(headers, body, CHAT)
        await agents.run_chat(call, decision, self.services, CHAT, send, receive)

    async def _messages(self, headers: Mapping[str, str], body: bytes, send: Send, receive: Receive) -> None:
        front = MessagesFront(headers)  # per request: it forwards anthropic-version/-beta to Anthropic
        call, decision = await self._begin(headers, body, front)
        await agents.run_chat(call, decision, self.services, front, send, receive)

    async def _count_tokens(self, headers: Mapping[str, str], body: bytes, send: Send, receive: Receive) -> None:
        snapshot = self.snapshots.current
        await authenticate(headers, snapshot.config, self._keys)
        await agents.count_message_tokens(parse_json_object(body), snapshot.config.groups, send)

    async def _responses(self, headers: Mapping[str, str], raw: bytes, send: Send, receive: Receive) -> None:
        """``POST /v1/responses``: like chat, plus the stored conversation (see :mod:`gateway.edge.agents`)."""
        services, snapshot = self.services, self.snapshots.current
        tenant = await authenticate(headers, snapshot.config, self._keys)
        body = parse_json_object(raw)
        stored = await agents.previous(services, tenant, body)
        front = ResponsesFront(stored.messages if stored else None)
        chain = stored.task_id if stored else await agents.chained_task(services, tenant, body)
        call, decision = await begin(snapshot, self.router, services.ledger, tenant, headers, body, front,
                                     chain=chain)
        if body.get("store", True) is not False:
            send = agents.storing_send(send, services, tenant, front, call.task.id,
                                       snapshot.config.server.responses_retention_s)
        await agents.run_chat(call, decision, services, front, send, receive)

    def _stored_response(self, method: str, response_id: str) -> Handler:
        """``GET`` / ``DELETE /v1/responses/{id}``, in the caller's tenant only."""
        async def handle(headers: Mapping[str, str], body: bytes, send: Send, receive: Receive) -> None:
            tenant = await self.authenticate(headers)
            if method == "GET":
                await agents.get_response(self.services, tenant, response_id, send)
            else:
                await agents.delete_response(self.services, tenant, response_id, send)
        return handle

    async def _embeddings(self, headers: Mapping[str, str], body: bytes, send: Send, receive: Receive) -> None:
        services = self.services
        call, decision = await self._begin(headers, body, EMBEDDINGS)
        await AttemptLoop(call, decision, services, UnaryEmbeddings(call, services.transport, send,
                                                                    EMBEDDINGS)).run()

    async def _explain(self, headers: Mapping[str, str], body: bytes, send: Send, receive: Receive) -> None:
        """``POST /v1/route/explain``: the same body and headers as a chat request; decides, sends nothing."""
        call, decision = await self._begin(headers, body, CHAT, explain=True)
        out = decision.explain()
        out["task_id"] = call.task.id
        # each deployment by more than its id: what it is and where it runs
        group = call.snapshot.config.groups.get(call.model)
        if group is None:
            group = (call.snapshot.wildcard_group(call.model) or ((), ()))[0]
        described = {d.id: describe_deployment(d) for d in (*group, *decision.ordered)}
        for entry in out["considered"]:
            entry.update(described.get(entry["deployment"], {}))
        out["deployments"] = described
        await send_json(send, 200, out, [(b"x-task-id", call.task.id.encode())])


def describe_deployment(dep: Deployment) -> dict[str, object]:
    """A deployment for a reader: kind, upstream model, region and open-weight (never a credential)."""
    return {"kind": dep.kind, "upstream_model": dep.model, "model_name": dep.model_name,
            "region": dep.model_info.get("region"), "open_weight": dep.model_info.get("open_weight")}


async def _send_error_if_unstarted(send: Send, shape: ErrorShape, err: GatewayError) -> None:
    """The error response, unless the response already started (a stream reports in-band;
    the server refuses a second start, which is all this can do then)."""
    status, headers, body = shape.error_response(err)
    if err.task_id:
        headers = [*headers, (b"x-task-id", err.task_id.encode())]
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except RuntimeError:
        pass


def create_app(config: Config | None = None) -> TaskgateApp:
    """The app factory uvicorn calls (``--factory``); reads ``$TASKGATE_CONFIG``."""
    if config is None:
        config = config_mod.load(config_mod.config_path())
    return TaskgateApp(config)


__all__ = ["TaskgateApp", "create_app"]
