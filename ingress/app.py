"""build_app: the ingress ASGI application (broker paths on a fast path, the rest on Starlette).

`/<namespace>/<broker>` (one trailing slash allowed) goes straight to `routes.BrokerIngress`, and
so does a channel's `/channels/<namespace>/<name>`.
Until the first contract is loaded it answers 503 with Retry-After instead: "broker not found"
(404) is an answer producers take as final, and at that point nothing is known yet. Everything
else (health, readiness, metrics, status, the UI) is an ordinary Starlette app the caller
composes, so operational endpoints can use a framework without taxing the event path.
No module globals: everything comes in as arguments.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Mapping, Sequence

import uvicorn
from kbroker.core import contract, telemetry
from kbroker.core.channel import Channel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.reporters import IngressReporter
from kbroker.core.settings import IngressSettings
from kbroker.ingress.priority import DeliveryPriority
from kbroker.ingress.routes import BrokerIngress, respond
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]


def health_routes(ready: ReadyCheck) -> list[BaseRoute]:
    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        ok, why = await ready()
        # A ready process may still say why it is degraded ("ok, degraded: ...").
        body = (why or "ok") if ok else why
        return PlainTextResponse(body + "\n", status_code=200 if ok else 503)

    return [Route("/healthz", healthz), Route("/readyz", readyz)]


def ingress_ready(
    holder: ContractHolder, channels: Mapping[str, Channel], not_loaded: str
) -> ReadyCheck:
    """Ready once a contract is loaded and every broker's channel is healthy."""

    async def ready() -> tuple[bool, str]:
        if not holder.loaded:
            return False, not_loaded
        for b in holder.current.brokers:
            channel = channels.get(b.channel)
            if channel is None or not await channel.healthy():
                return False, f"channel {b.channel} of broker {b.key} unavailable"
        return True, "ok"

    return ready


class IngressApp:
    def __init__(self, ingress: BrokerIngress, admin: Starlette) -> None:
        self.ingress = ingress
        self.admin = admin
        self._starting = ((b"retry-after", ingress.retry_after),)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            parts = path.strip("/").split("/") if path not in ("", "/") else []
            if len(parts) == 3 and parts[0] == contract.CHANNEL_PATH:
                # `/channels/<ns>/<name>`: a channel, keyed by its whole path (contract.Broker.key)
                parts = [f"{parts[0]}/{parts[1]}", parts[2]]
            # "/-/..." is never a Broker ("-" is no DNS-1123 namespace): the console lives there.
            if len(parts) == 2 and all(parts) and not path.endswith("//") and parts[0] != "-":
                if not self.ingress.holder.loaded:
                    self.ingress.observer.rejected(f"{parts[0]}/{parts[1]}", 503, 0.0)
                    await respond(
                        send, 503, "starting: configuration not loaded yet", self._starting
                    )
                    return
                await self.ingress.handle(scope, receive, send, parts[0], parts[1])
                return
            if not parts and scope["method"] == "POST":
                await respond(send, 404, "POST to /<namespace>/<broker>")
                return
        await self.admin(scope, receive, send)


def server_config(app: ASGIApp) -> uvicorn.Config:
    """How every deployable serves HTTP: uvloop + httptools, and nothing per request that the
    event path doesn't need (no proxy-header rewriting, no Server/Date headers, no access log)."""
    return uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        log_config=None,  # uvicorn's lines go through our handler, in --log-format like the rest
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=30,
    )


YOUNG_GENERATION_THRESHOLD = 10_000  # allocations between young collections (CPython: 700)


def tune_gc_for_serving() -> None:
    """Tune the cyclic garbage collector for serving; call once, just before serving.

    Freeze: every object alive at startup (modules, classes, the app) leaves the collector's
    generations. Full collections otherwise walk that whole static heap again and again: with 100
    triggers fanning out they showed up as a quarter of the loop's samples (py-spy) and as latency
    spikes; frozen, the fan-out p99 fell from 55-64 ms to 21-29 ms at the same CPU
    (`kbroker bench fanout --rate 300`, 2 runs each).

    Young threshold: what a young collection walks is what is in flight at that moment, about the
    same however often it runs, so running it every 10,000 allocations instead of 700 costs less
    per request: -4 % CPU per event at 6,000 ingress events/s (3 interleaved runs each).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)


def build_app(
    settings: IngressSettings,
    channels: Mapping[str, Channel],
    holder: ContractHolder,
    ready: ReadyCheck,
    extra_routes: Sequence[BaseRoute] = (),
    observer: IngressReporter | None = None,
    tracing: telemetry.Tracing | None = None,
    fallback: ASGIApp | None = None,
    priority: DeliveryPriority | None = None,
) -> IngressApp:
    """`fallback` answers what no route matches (an extra process's AdminProxy); else 404."""
    ingress = BrokerIngress(settings, channels, holder, observer, tracing, priority)
    routes = [*health_routes(ready), *extra_routes]
    if fallback is not None:
        routes.append(Mount("/", app=fallback))
    admin = Starlette(routes=routes)
    return IngressApp(ingress, admin)
