"""`kbroker controller | ingress | filter`: the three deployables of cluster mode (wiring only).

Cluster mode splits `kbroker run` in three processes that share nothing but the contract:

  API server --watch--> controller --ConfigMap kbroker-contract (mounted as a file)--> ingress
                             |                                                   \--> filter
                             '-- GET /contract-generation on both, before it reports Ready

- `controller` watches Brokers/Triggers (controller/kube/reconciler.py) and writes the contract
  ConfigMap, and with `--contract-file` a local copy (for processes that are not pods: tests, Tilt's
  process mode).
- `ingress` and `filter` read the contract file with FileContractSource (hot reload) and are
  composed of the same parts as `kbroker run` (kbroker/wiring.py): ingress.app.build_app, and
  filter.service.FilterService. Each exposes /healthz, /readyz, /metrics and
  GET /contract-generation (the generation it serves), and traces as OTEL_* variables say.
- On SIGTERM each stops accepting, lets in-flight requests finish within --shutdown-grace
  (default 20 s, under Kubernetes' default 30 s termination grace), stops its workers, exits 0.

Defaults come from KBROKER_* variables (through core.settings.env, the one reader of the
environment) so config/500-deployments.yaml sets them; flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from kbroker import limit_flags, ops_guard, security_flags, wiring, wiring_http
from kbroker.core import logs
from kbroker.core.contract_source import ContractHolder, FileContractSource
from kbroker.core.settings import CLUSTER_SHUTDOWN_GRACE, RunSettings, env, log_format_default

log = logging.getLogger("kbroker")


def _env_int(name: str, default: int) -> int:
    raw = env(name)
    return int(raw) if raw and raw.isdigit() else default


def _env_float(name: str, default: float) -> float:
    raw = env(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "controller",
        help="cluster mode: reconcile Brokers/Triggers from Kubernetes into the contract",
        description="Watch Brokers and Triggers; write the contract ConfigMap and their status.",
    )
    c.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: in-cluster)")
    c.add_argument("--system-namespace", default=env("KBROKER_SYSTEM_NAMESPACE", "kbroker-system"))
    c.add_argument(
        "--contract-configmap", default=env("KBROKER_CONTRACT_CONFIGMAP", "kbroker-contract")
    )
    c.add_argument(
        "--ingress-url",
        default=env("KBROKER_INGRESS_URL", ""),
        help="base of Broker addresses (default http://kbroker-ingress.<ns>.svc.cluster.local)",
    )
    c.add_argument(
        "--ingress-ca",
        type=Path,
        default=Path(env("KBROKER_INGRESS_CA") or "") if env("KBROKER_INGRESS_CA") else None,
        metavar="FILE",
        help="PEM CA of an https --ingress-url: published as CACerts, trusted by the probes",
    )
    c.add_argument("--classes", nargs="+", default=[], help="Broker classes served (default all)")
    c.add_argument("--contract-file", type=Path, help="also write the contract to this file")
    c.add_argument(
        "--data-plane",
        action="append",
        default=None,
        metavar="URL",
        help="probe URL/contract-generation before Ready (repeat; default: the in-cluster "
        "ingress and filter Services; 'none' disables)",
    )
    c.add_argument("--resync", type=float, default=30.0, help="seconds between full reconciles")
    c.add_argument(
        "--finalize-timeout",
        type=float,
        default=60.0,
        help="seconds a deleted Broker waits for a silent data plane before its storage goes",
    )
    _common(c)
    c.set_defaults(func=_main(_controller))
    for name, what in (("ingress", "HTTP -> channel"), ("filter", "channel -> subscribers")):
        p = sub.add_parser(name, help=f"cluster mode data plane: {what}")
        p.add_argument(
            "--contract",
            type=Path,
            default=Path(env("KBROKER_CONTRACT_FILE", "/etc/kbroker/contract/contract.json") or ""),
            help="contract JSON file (the mounted ConfigMap), hot-reloaded",
        )
        p.add_argument("--poll", type=float, default=1.0, help="seconds between contract checks")
        if name == "ingress":
            p.add_argument(
                "--admin-proxy",
                type=Path,
                metavar="SOCKET",
                help="pass requests that are not events to the process listening on this Unix "
                "socket (set by `kbroker run --processes N` for its extra ingress processes)",
            )
            limit_flags.register(p)
        _common(p)
        p.set_defaults(func=_main(_ingress if name == "ingress" else _filter))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=env("KBROKER_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=_env_int("KBROKER_PORT", 8080), help="0 = free")
    p.add_argument("--data", type=Path, default=Path(env("KBROKER_DATA", "data") or "data"))
    p.add_argument("--kafka", metavar="BOOTSTRAP", default=env("KBROKER_KAFKA"))
    p.add_argument(
        "--nats",
        metavar="URL",
        default=env("KBROKER_NATS"),
        help="NATS server(s) with JetStream for NatsJetStreamChannel brokers (KBROKER_NATS)",
    )
    p.add_argument("--rabbitmq", metavar="URL", default=env("KBROKER_RABBITMQ"))
    p.add_argument("--log-level", default="info", choices=logs.LEVELS)
    p.add_argument(
        "--log-format",
        default=log_format_default(),
        type=logs.log_format,
        choices=logs.FORMATS,
        help="log lines as text or one JSON object each (default text; KBROKER_LOG_FORMAT)",
    )
    p.add_argument("--reuse-port", action="store_true", help="share the port with other processes")
    security_flags.register(p)
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=_env_float("KBROKER_SHUTDOWN_GRACE", CLUSTER_SHUTDOWN_GRACE),
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight requests get to finish (default %(default)s)",
    )


def _main(
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
) -> Callable[[argparse.Namespace], int]:
    def main(args: argparse.Namespace) -> int:
        logs.configure_logging(args.log_format, args.log_level)
        return wiring.run_process(lambda: run(args))

    return main


def _settings(args: argparse.Namespace) -> RunSettings:
    base = security_flags.apply(RunSettings(), args)
    return dataclasses.replace(
        base,
        host=args.host,
        port=args.port,
        data_dir=args.data,
        kafka_bootstrap=args.kafka,
        nats_url=args.nats,
        rabbitmq_url=args.rabbitmq,
        reuse_port=bool(getattr(args, "reuse_port", False)),
        embedded=dataclasses.replace(
            base.embedded,
            data_dir=args.data,
            # --reuse-port: another process on this port, and so on this data folder, appends too.
            shared_writers=bool(getattr(args, "reuse_port", False)),
        ),
        shutdown=dataclasses.replace(base.shutdown, grace=args.shutdown_grace),
        ingress=limit_flags.apply(base.ingress, args),
    )


async def _serve(
    name: str,
    app: Any,
    sock: socket.socket,
    settings: RunSettings,
    background: list[Callable[[], Coroutine[Any, Any, None]]],
    protocol: type[asyncio.Protocol] | None = None,
) -> None:
    """Serve `app` on `sock` and run `background` until SIGINT/SIGTERM or one of them ends;
    https when --tls-cert/--tls-key say so, operational endpoints behind --ops-token."""
    port = sock.getsockname()[1]
    server_tls = wiring.server_tls(settings.tls)
    if server_tls is not None:
        background = [*background, server_tls.run]
    stop = asyncio.Event()
    remove = wiring_http.stop_on_signals(stop)
    tasks = [asyncio.create_task(b(), name=f"{name}-background") for b in background]
    scheme = "https" if server_tls else "http"
    try:
        await wiring_http.serve(
            f"kbroker {name}",
            ops_guard.guard(app, settings.ops_token_file),
            [sock],
            settings.shutdown,
            stop,
            background=tasks,
            ready_line=f"kbroker {name} ready on {scheme}://{settings.host}:{port}",
            tls=server_tls.context if server_tls else None,
            protocol=protocol,
        )
    finally:
        remove()


def _bind(settings: RunSettings) -> socket.socket:
    """First thing each deployable does: a busy port is reported before anything is started."""
    return wiring.bind(settings.host, settings.port, reuse_port=settings.reuse_port)


async def _ingress(args: argparse.Namespace) -> None:
    from kbroker.ingress.admin_proxy import AdminProxy
    from kbroker.ingress.app import build_app, ingress_ready
    from kbroker.ingress.protocol import bounded_protocol

    settings = _settings(args)
    sock = _bind(settings)
    observability = wiring.Observability(wiring.tracing_from_env())
    channels = wiring.open_channels(settings)
    await wiring.start_channels(channels, required=False)
    holder = ContractHolder()
    source = FileContractSource(args.contract, holder, args.poll)
    ready = ingress_ready(holder, channels, f"no contract read from {args.contract} yet")
    routes: list[BaseRoute] = [
        wiring.generation_route(lambda: holder.current.generation if holder.loaded else -1)
    ]
    proxy = AdminProxy(args.admin_proxy) if args.admin_proxy else None
    if proxy is None:  # an extra process of `kbroker run` leaves /metrics to the primary
        observability.watch_channels(channels, lambda: holder.current.brokers, settings.data_dir)
        routes.append(observability.metrics_route())
    app = build_app(
        settings.ingress,
        channels,
        holder,
        ready,
        extra_routes=routes,
        observer=observability.metrics,
        tracing=observability.tracing,
        fallback=proxy,
    )
    try:
        # Read the contract before serving: an extra ingress of `kbroker run --processes N`
        # shares the port through SO_REUSEPORT, so the kernel queues connections for it from the
        # moment it listens; they should meet the brokers, not "starting" (503).
        await source.poll_once()
        protocol = bounded_protocol(
            settings.ingress.server, observability.metrics, settings.ingress.retry_after
        )
        await _serve("ingress", app, sock, settings, [source.run], protocol)
    finally:
        if proxy is not None:
            await proxy.aclose()
        await wiring.close_channels(channels)
        observability.shutdown()
    logs.log_shutdown(log, "stopped", "kbroker ingress")


async def _filter(args: argparse.Namespace) -> None:
    from kbroker import ui_deliveries
    from kbroker.filter.service import FilterService

    settings = _settings(args)
    sock = _bind(settings)
    observability = wiring.Observability(wiring.tracing_from_env())
    channels = wiring.open_channels(settings)
    await wiring.start_channels(channels, required=False)
    holder = ContractHolder()
    service = FilterService(
        channels,
        holder,
        settings.dispatcher,
        hooks=observability.metrics,
        tracing=observability.tracing,
        pin_generations=True,
    )
    source = FileContractSource(args.contract, holder, args.poll)

    async def ready() -> tuple[bool, str]:
        return await service.ready(f"no contract read from {args.contract} yet")

    routes: list[BaseRoute] = [
        *wiring.health_routes(ready),
        wiring.generation_route(lambda: service.generation),
        observability.metrics_route(service.trigger_states),
        ui_deliveries.records_route(service.dispatcher, holder),
    ]
    try:
        await _serve("filter", Starlette(routes=routes), sock, settings, [source.run])
    finally:
        await service.close(settings.shutdown.drain_workers)
        service.pool.dispatcher.flush_log()
        await wiring.close_channels(channels)
        observability.shutdown()
    logs.log_shutdown(log, "stopped", "kbroker filter")


def _read_ca(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as exc:
        raise wiring.StartupError(f"--ingress-ca {path}: {exc}") from None


async def _controller(args: argparse.Namespace) -> None:
    from kbroker import cluster_sources
    from kbroker.controller.kube import client as kube
    from kbroker.controller.kube.reconciler import KubeController, KubeSettings
    from kbroker.controller.kube.sources_lease import Lease

    ns = args.system_namespace
    plane = args.data_plane
    if plane is None:
        plane = [f"http://kbroker-{n}.{ns}.svc.cluster.local" for n in ("ingress", "filter")]
    settings = KubeSettings(
        system_namespace=ns,
        ingress_url=args.ingress_url,
        classes=tuple(args.classes),
        contract_configmap=args.contract_configmap,
        contract_file=args.contract_file,
        data_plane=tuple(u for u in plane if u != "none"),
        kafka_bootstrap=args.kafka,
        nats_url=args.nats,
        rabbitmq_url=args.rabbitmq,
        resync_interval=args.resync,
        finalize_timeout=args.finalize_timeout,
        ingress_ca_certs=_read_ca(args.ingress_ca),
        probe_token_file=args.ops_token,
        probe_ca=args.ingress_ca,
    )
    run_settings = _settings(args)
    sock = _bind(run_settings)
    observability = wiring.Observability()  # the controller makes no spans
    channels = wiring.open_channels(run_settings)
    await wiring.start_channels(channels, required=False)
    client = await kube.connect(args.kubeconfig)
    controller = KubeController(client, settings, channels)

    async def ready() -> tuple[bool, str]:
        if controller.contract is None:
            return False, "no contract written yet"
        return True, f"generation {controller.contract.generation}"

    generation = wiring.generation_route(
        lambda: controller.contract.generation if controller.contract else -1
    )
    routes = [*wiring.health_routes(ready), generation, observability.metrics_route()]
    sources = cluster_sources.task(
        controller,
        client,
        client.server,
        channels,
        args.data,
        min(args.resync, 5.0),
        Lease(client, ns),
    )
    try:
        await _serve(
            "controller",
            Starlette(routes=routes),
            sock,
            run_settings,
            [controller.run, sources],
        )
    finally:
        await client.close()
        await wiring.close_channels(channels)
    logs.log_shutdown(log, "stopped", "kbroker controller")
