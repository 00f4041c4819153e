"""serve: run one process's HTTP server and background tasks, and shut down without dropping work.

Why not uvicorn's own shutdown: it closes every keep-alive connection that is idle at the instant
SIGTERM arrives. A producer that has just written its next request on such a connection gets a
reset instead of an answer, and cannot know whether the event was stored. Here SIGTERM means:

1. log "shutting down"; stop accepting new connections (the listening sockets close);
2. every response from now on carries `Connection: close`, so each busy connection ends after the
   answer to the request it carries; a connection that stays idle for `idle_linger` is closed
   (as racy as an ordinary keep-alive timeout, no more; one idle that long already goes at once);
3. after `grace` seconds whatever is still running is cancelled and its connection closed;
4. the caller's cleanup runs (trigger workers finish and commit, channels flush), then "stopped".

What it refuses: installing uvicorn's signal handlers (they replace the process's own, and
re-raise the signal once serving ends) and deciding what the cleanup is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable, Generator, Sequence

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kbroker.core import logs
from kbroker.core.settings import ShutdownSettings
from kbroker.ingress.app import server_config, tune_gc_for_serving

log = logging.getLogger("kbroker")

_CLOSE = (b"connection", b"close")
_POLL = 0.05  # seconds between looks at the connections while draining


class _CloseWhenDraining:
    """ASGI wrapper: once draining, every response asks the client to close the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.draining:
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            await send(message)

        await self.app(scope, receive, closing)


class _Server(uvicorn.Server):
    def __init__(
        self,
        app: ASGIApp,
        settings: ShutdownSettings,
        tls: ssl.SSLContext | None = None,
        protocol: type[asyncio.Protocol] | None = None,
    ) -> None:
        self.gate = _CloseWhenDraining(app)
        config = server_config(self.gate)
        if protocol is not None:  # a protocol class with limits (ingress.protocol); before load()
            config.http = protocol
        if tls is not None:
            # uvicorn hands `config.ssl` to create_server once load() ran; our context object
            # (not one uvicorn builds from files) so that a certificate reload reaches it.
            config.load()
            config.ssl = tls
        super().__init__(config)
        self.shutdown_settings = settings

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # ours are installed by serve()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gate.draining = True
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        loop = asyncio.get_running_loop()
        settings = self.shutdown_settings
        deadline = loop.time() + settings.grace
        linger = min(settings.idle_linger, settings.grace)
        idle_since: dict[object, float] = {}
        state = self.server_state
        while (state.connections or state.tasks) and loop.time() < deadline:
            now = loop.time()
            for conn in list(state.connections):
                cycle = getattr(conn, "cycle", None)
                if cycle is None or cycle.response_complete:
                    if now - idle_since.setdefault(conn, _idle_start(conn, now)) >= linger:
                        conn.shutdown()  # idle: closes the transport
                else:
                    idle_since.pop(conn, None)
                    cycle.keep_alive = False  # busy: close after this answer
            await asyncio.sleep(_POLL)
        if state.connections or state.tasks:
            log.warning(
                "grace period of %g s over: closing %d connection(s), cancelling %d request(s)",
                settings.grace,
                len(state.connections),
                len(state.tasks),
            )
            for conn in list(state.connections):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.close()
            for task in list(state.tasks):
                task.cancel()
            await asyncio.gather(*state.tasks, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()


def _idle_start(conn: object, now: float) -> float:
    """When the connection went idle: its keep-alive timer was armed then (same loop clock), so
    a connection idle for long before the drain began is closed at once; `now` if unknown."""
    timer = getattr(conn, "timeout_keep_alive_task", None)
    timeout = getattr(conn, "timeout_keep_alive", None)
    when = getattr(timer, "when", None)
    if when is None or not isinstance(timeout, int | float):
        return now
    return min(now, float(when()) - timeout)


def stop_on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set `stop`; returns the function that removes the handlers."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def remove() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return remove


async def serve(
    name: str,
    app: ASGIApp,
    sockets: Sequence[socket.socket],
    settings: ShutdownSettings,
    stop: asyncio.Event,
    background: Sequence[asyncio.Task[None]] = (),
    ready_line: str = "",
    before_drain: Callable[[], Awaitable[None]] | None = None,
    tls: ssl.SSLContext | None = None,
    protocol: type[asyncio.Protocol] | None = None,
) -> None:
    """Serve `app` on `sockets` until `stop` is set (install `stop_on_signals` first) or a
    background task ends; then drain as the module says and cancel the background tasks.
    `before_drain` runs once the stop is decided, before connections drain. `tls`: serve https
    on every socket with this context (Unix sockets included); `protocol` replaces the HTTP
    protocol class (ingress.protocol.bounded_protocol: connection limits)."""
    server = _Server(app, settings, tls, protocol)
    http = asyncio.create_task(server.serve(sockets=list(sockets)), name="http")
    stopper = asyncio.create_task(stop.wait(), name="stop")
    tune_gc_for_serving()
    if ready_line:
        print(ready_line, flush=True)
    done, _ = await asyncio.wait([http, stopper, *background], return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        if t is not stopper and not t.cancelled() and t.exception() is not None:
            log.error("%s: %s stopped: %r", name, t.get_name(), t.exception())
    logs.log_shutdown(log, "stopping", name, grace=settings.grace)
    if before_drain is not None:
        await before_drain()
    server.should_exit = True
    await asyncio.gather(http, return_exceptions=True)
    for t in background:
        t.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    stopper.cancel()
