"""The parts every kbroker process is assembled from: channels, sockets, observability, routes.

Why one module: `kbroker run` and the three cluster deployables (controller, ingress, filter) are
compositions of the same parts, and a part built in two places drifts (cluster mode once had no
/metrics and no tracing at all). Each process picks what it needs from here:

    channels        open_channels / start_channels / close_channels
    listening       bind / bind_unix (a busy port is a StartupError naming it)
    observability   Observability: the Metrics registry, tracing from OTEL_*, GET /metrics
    routes          health_routes (/healthz, /readyz), generation_route (/contract-generation)
    serving         kbroker.wiring_http.serve (graceful shutdown on SIGTERM)
    the CLI         run_process: logs a StartupError as one line and exits non-zero

What it refuses: business logic (ingress/ and filter/ hold it) and reading the environment other
than through core.settings and the OTel SDK's own OTEL_* variables.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kbroker.core import contract, metrics, telemetry, tls
from kbroker.core.channel import Channel, ChannelError
from kbroker.core.channels.embedded import EmbeddedChannel
from kbroker.core.settings import RunSettings, TlsSettings
from kbroker.ingress.app import ReadyCheck, health_routes

log = logging.getLogger(__name__)

__all__ = ["ReadyCheck", "health_routes"]


class StartupError(Exception):
    """Something the user must fix before the process can start, said in one line."""


def run_process(main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run `main` on uvloop; a StartupError becomes one line on stderr and exit code 2."""
    import uvloop

    try:
        uvloop.run(main())
    except StartupError as exc:
        print(f"kbroker: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


def server_tls(settings: TlsSettings) -> tls.ReloadingServerContext | None:
    """The https context from --tls-cert/--tls-key; None for plain http. Unusable files are a
    StartupError: a process told to serve TLS must not fall back to plaintext."""
    if not settings.enabled:
        if settings.cert is not None or settings.key is not None:
            raise StartupError("TLS needs both --tls-cert and --tls-key")
        return None
    try:
        context = tls.ReloadingServerContext(settings)
        context.ca_pem()  # an unreadable --tls-ca is found now, not at the first compile
        return context
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise StartupError(f"TLS certificate {settings.cert} / key {settings.key}: {exc}") from None


# -- channels ------------------------------------------------------------------------------------
def open_channels(settings: RunSettings) -> dict[str, Channel]:
    """Every backend this process can serve; which one a broker uses is its class's choice."""
    from kbroker.core.channels import kafka, rabbitmq

    channels: dict[str, Channel] = {
        "embedded": EmbeddedChannel(settings.embedded),
        "kafka": kafka.KafkaChannel(kafka.KafkaSettings(bootstrap=settings.kafka_bootstrap)),
        "rabbitmq": rabbitmq.RabbitMQChannel(rabbitmq.RabbitMQSettings(url=settings.rabbitmq_url)),
    }
    if settings.nats_url:
        # Only with a server to use (NATS brokers have no other source of one; without it the
        # compiler keeps them not Ready): nats-py loads aiohttp, which an ingress never needs.
        from kbroker.core.channels import nats

        channels["nats"] = nats.NatsChannel(nats.NatsSettings(url=settings.nats_url))
    return channels


async def start_channels(channels: dict[str, Channel], required: bool) -> None:
    """Start every channel. `required`: one that cannot start is a StartupError (a standalone
    broker with an unusable data folder); otherwise it is dropped with a warning (a cluster pod
    with a read-only file system has no embedded log, and needs none when Kafka stores events)."""
    for name, channel in list(channels.items()):
        try:
            await channel.start()
        except ChannelError as exc:
            if required:
                await close_channels(channels)
                raise StartupError(f"channel {name}: {exc}") from None
            log.warning("channel %s unavailable in this process: %s", name, exc)
            del channels[name]


async def close_channels(channels: Mapping[str, Channel]) -> None:
    for channel in channels.values():
        with contextlib.suppress(Exception):
            await channel.close()


def check_folder(what: str, path: Path, writable: bool) -> None:
    """A folder the process needs, usable now: a StartupError naming it otherwise."""
    try:
        if writable:
            path.mkdir(parents=True, exist_ok=True)
        os.listdir(path)
    except OSError as exc:
        raise StartupError(f"{what} {path}: {exc.strerror or exc}") from None
    if writable and not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(f"{what} {path}: not writable")


# -- listening -----------------------------------------------------------------------------------
def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; failing to get one is a StartupError that names the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # the kernel spreads connections over every process bound to the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StartupError(f"cannot listen on {host}:{port}: {why or exc}") from None
    sock.setblocking(False)
    return sock


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at `path` (a stale one from a killed run is replaced), owner-only."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        path.chmod(0o600)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


# -- observability -------------------------------------------------------------------------------
def tracing_from_env() -> telemetry.Tracing:
    """Tracing as the standard OTEL_* variables ask (off unless an exporter is named)."""
    try:
        return telemetry.Tracing(telemetry.build_provider(telemetry.trace_settings()))
    except telemetry.TelemetryConfigError as exc:
        raise StartupError(f"tracing: {exc}") from None


TriggerStates = Callable[[], Awaitable[Sequence[metrics.TriggerState]]]


@dataclass
class Observability:
    """One process's metrics registry and tracer; both go to ingress and dispatcher alike."""

    tracing: telemetry.Tracing = field(default_factory=telemetry.disabled)
    metrics: metrics.Metrics = field(default_factory=metrics.Metrics)

    def watch_channels(
        self,
        channels: Mapping[str, Channel],
        brokers: Callable[[], Sequence[contract.Broker]],
        data_dir: Path,
    ) -> None:
        self.metrics.watch_channels(channels, brokers, metrics.storage_bytes_for(data_dir))

    def metrics_route(self, trigger_states: TriggerStates | None = None) -> Route:
        """GET /metrics; `trigger_states` adds the scrape-time trigger gauges (a dispatcher)."""

        async def prometheus(_: Request) -> Response:
            if trigger_states is not None:
                self.metrics.refresh(await trigger_states())
            return Response(self.metrics.render(), media_type=metrics.CONTENT_TYPE)

        return Route("/metrics", prometheus)

    def shutdown(self) -> None:
        self.tracing.shutdown()  # flush the last spans


# -- routes --------------------------------------------------------------------------------------
def generation_route(generation: Callable[[], int]) -> BaseRoute:
    """GET /contract-generation: what the controller waits for before it reports Ready."""

    async def served(_: Request) -> Response:
        return JSONResponse({"generation": generation()})

    return Route("/contract-generation", served)
