"""The console as one ASGI app: its pages, the events and dead-letters APIs, static files.

Whoever serves the console (`kbroker run` in-process, `kbroker ui` on Kubernetes) builds a
`ConsoleContext` and mounts `build(ctx)` under `/-/ui` (`mount`). The app is wrapped by
`security.Guard`, so every route, including the JSON APIs other modules add, gets the same token,
host and CSRF checks. The APIs are optional imports: a part of the console that is not there
leaves its pages showing what they can instead of failing the whole console.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from kbroker.ui import security
from kbroker.ui.context import ConsoleContext
from kbroker.ui.templating import STATIC, base_path, render
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

PREFIX = "/-/ui"  # a DNS-1123 namespace cannot be "-": never a Broker's ingress path

PAGES = (
    "kbroker.ui.pages.overview",
    "kbroker.ui.pages.broker",
    "kbroker.ui.pages.trigger",
    "kbroker.ui.pages.editor",
    "kbroker.ui.pages.subscriber_test",
    "kbroker.ui.pages.inspector",
    "kbroker.ui.pages.playground",
)
APIS = ("kbroker.ui.api_events", "kbroker.ui.api_deadletters")


def _routes_of(module: str, ctx: ConsoleContext, required: bool) -> list[BaseRoute]:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if required or exc.name != module:
            raise
        return []
    make: Callable[[ConsoleContext], list[BaseRoute]] = mod.routes
    return make(ctx)


def _login_routes(ctx: ConsoleContext) -> list[BaseRoute]:
    async def login(request: Request) -> Response:
        if not ctx.settings.token:
            return RedirectResponse(base_path(request) + "/", status_code=303)
        if request.method == "POST":
            form = await request.form()
            given = str(form.get("token", ""))
            if security._same(given, ctx.settings.token):
                response = RedirectResponse(base_path(request) + "/", status_code=303)
                cookie = security.login_cookie(given, base_path(request) or "/", False)
                response.headers.append("set-cookie", cookie)
                return response
            return render(request, ctx, "login.html", status_code=401, failed=True)
        return render(request, ctx, "login.html", failed=False)

    return [Route("/login", login, methods=["GET", "POST"], name="login")]


def build(ctx: ConsoleContext) -> ASGIApp:
    """The console app (routes relative to where it is mounted), behind its security wrapper."""
    routes: list[BaseRoute] = [
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        *_login_routes(ctx),
    ]
    for module in PAGES:
        routes += _routes_of(module, ctx, required=module.endswith(".overview"))
    for module in APIS:
        routes += _routes_of(module, ctx, required=False)

    async def not_found(request: Request, exc: Exception) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return render(request, ctx, "not_found.html", status_code=404)
        return PlainTextResponse("not found\n", status_code=404)

    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found},
        middleware=[Middleware(_Failsafe, ctx=ctx)],  # inside Starlette's own 500 handler
    )
    return security.Guard(app, token=ctx.settings.token, secure_cookies=False)


class _Failsafe:
    """A page whose port fails (the API server or a channel unreachable) answers 503 with the
    reason, instead of a bare 500; an error after the response started is re-raised."""

    def __init__(self, app: ASGIApp, ctx: ConsoleContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started or scope["type"] != "http":
                raise
            request = Request(scope)
            log.warning("console: %s %s failed: %r", request.method, request.url.path, exc)
            response = render(request, self.ctx, "error.html", status_code=503, error=str(exc))
            await response(scope, receive, send)


def mount(ctx: ConsoleContext) -> list[BaseRoute]:
    """Routes to add to a server's Starlette routes: the console under `/-/ui`, and `/-/ui`
    without its slash redirected to it."""

    async def redirect(_: Request) -> Response:
        return RedirectResponse(PREFIX + "/", status_code=308)

    return [Route(PREFIX, redirect), Mount(PREFIX, app=build(ctx))]
