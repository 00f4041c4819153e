"""`kbroker controller | ingress | filter`: the three deployables of cluster mode (wiring only).

Cluster mode splits `kbroker run` in three processes that share nothing but the contract:

  API server --watch--> controller --ConfigMap kbroker-contract (mounted as a file)--> ingress
                             |                                                   \--> filter
                             '-- GET /contract-generation on both, before it reports Ready

- `controller` watches Brokers/Triggers (controller/kube/reconciler.py) and writes the contract
  ConfigMap, and with `--contract-file` a local copy (for processes that are not pods: tests, Tilt's
  process mode).
- `ingress` and `filter` read the contract file with FileContractSource (hot reload) and reuse
  the standalone pieces: ingress.app.build_app, and filter.pool.WorkerPool with the Dispatcher.
  Both expose /healthz, /readyz and GET /contract-generation (the generation they serve).

Defaults come from KBROKER_* variables (through core.settings.env, the one reader of the
environment) so config/500-deployments.yaml sets them; flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kbroker.core.channel import Channel, ChannelError
from kbroker.core.contract import Contract
from kbroker.core.contract_source import ContractHolder, FileContractSource
from kbroker.core.settings import RunSettings, env

if TYPE_CHECKING:
    from kbroker.filter.pool import WorkerPool
    from kbroker.filter.worker import TriggerWorker

log = logging.getLogger(__name__)


def _env_int(name: str, default: int) -> int:
    raw = env(name)
    return int(raw) if raw and raw.isdigit() else default


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
        _common(p)
        p.set_defaults(func=_main(_ingress if name == "ingress" else _filter))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=env("KBROKER_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=_env_int("KBROKER_PORT", 8080), help="0 = free")
    p.add_argument("--data", type=Path, default=Path(env("KBROKER_DATA", "data") or "data"))
    p.add_argument("--kafka", metavar="BOOTSTRAP", default=env("KBROKER_KAFKA"))
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--reuse-port", action="store_true", help="share the port with other processes")


def _main(
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
) -> Callable[[argparse.Namespace], int]:
    def main(args: argparse.Namespace) -> int:
        import uvloop

        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        uvloop.run(run(args))
        return 0

    return main


def _settings(args: argparse.Namespace) -> RunSettings:
    base = RunSettings()
    return dataclasses.replace(
        base,
        host=args.host,
        port=args.port,
        data_dir=args.data,
        kafka_bootstrap=args.kafka,
        reuse_port=bool(getattr(args, "reuse_port", False)),
        embedded=dataclasses.replace(
            base.embedded,
            data_dir=args.data,
            # --reuse-port: another process on this port, and so on this data folder, appends too.
            shared_writers=bool(getattr(args, "reuse_port", False)),
        ),
    )


async def _open_channels(settings: RunSettings) -> dict[str, Channel]:
    from kbroker import standalone

    channels = standalone.open_channels(settings)
    for name, channel in list(channels.items()):
        try:
            await channel.start()
        except ChannelError as exc:  # e.g. no writable data dir in a read-only pod
            log.warning("channel %s unavailable in this process: %s", name, exc)
            del channels[name]
    return channels


async def _close_channels(channels: Mapping[str, Channel]) -> None:
    for channel in channels.values():
        with contextlib.suppress(Exception):
            await channel.close()


def _generation_route(generation: Callable[[], int]) -> Route:
    async def served(_: Request) -> Response:
        return JSONResponse({"generation": generation()})

    return Route("/contract-generation", served)


async def _serve(
    name: str, app: Any, settings: RunSettings, background: list[Awaitable[None]]
) -> None:
    """Serve `app` and run `background` until SIGINT/SIGTERM or one of them ends."""
    from kbroker import standalone
    from kbroker.ingress.app import server_config, tune_gc_for_serving

    sock = standalone.bind(settings.host, settings.port, reuse_port=settings.reuse_port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(b) for b in background]
    http = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    stopper = asyncio.create_task(stop.wait())
    tune_gc_for_serving()
    print(f"kbroker {name} ready on http://{settings.host}:{port}", flush=True)
    done, _ = await asyncio.wait([http, stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        if t is not stopper and not t.cancelled() and t.exception() is not None:
            log.error("%s stopped: %r", name, t.exception())
    server.should_exit = True
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(http, return_exceptions=True)
    stopper.cancel()


async def _ingress(args: argparse.Namespace) -> None:
    from kbroker.ingress.admin_proxy import AdminProxy
    from kbroker.ingress.app import build_app

    settings = _settings(args)
    channels = await _open_channels(settings)
    holder = ContractHolder()
    source = FileContractSource(args.contract, holder, args.poll)

    async def ready() -> tuple[bool, str]:
        if not holder.loaded:
            return False, f"no contract read from {args.contract} yet"
        for b in holder.current.brokers:
            channel = channels.get(b.channel)
            if channel is None or not await channel.healthy():
                return False, f"channel {b.channel} of broker {b.key} unavailable"
        return True, "ok"

    generation = _generation_route(lambda: holder.current.generation if holder.loaded else -1)
    proxy = AdminProxy(args.admin_proxy) if args.admin_proxy else None
    app = build_app(
        settings.ingress, channels, holder, ready, extra_routes=[generation], fallback=proxy
    )
    # Read the contract before listening: an extra ingress of `kbroker run --processes N` shares
    # the port through SO_REUSEPORT, with no readiness gate in front of it, so the kernel hands it
    # connections the moment it listens; they must not meet "broker not found".
    await source.poll_once()
    try:
        await _serve("ingress", app, settings, [source.run()])
    finally:
        if proxy is not None:
            await proxy.aclose()
        await _close_channels(channels)


async def _filter(args: argparse.Namespace) -> None:
    from kbroker.filter.dispatch import Dispatcher
    from kbroker.filter.httpclient import HttpClient
    from kbroker.filter.pool import WorkerPool
    from kbroker.filter.sender import AiohttpSender
    from kbroker.ingress.app import health_routes

    settings = _settings(args)
    channels = await _open_channels(settings)
    holder = ContractHolder()
    sender = HttpClient(fallback=AiohttpSender())
    pool = WorkerPool(channels, Dispatcher(sender, settings.dispatcher), settings.dispatcher)
    holder.subscribe(pool.apply)
    pinned = _Pinned(pool)
    holder.subscribe(pinned.settle)
    source = FileContractSource(args.contract, holder, args.poll)

    async def ready() -> tuple[bool, str]:
        if not holder.loaded:
            return False, f"no contract read from {args.contract} yet"
        return (True, "ok") if pool.healthy() else (False, "a trigger worker stopped")

    routes: list[BaseRoute] = [*health_routes(ready), _generation_route(lambda: pinned.generation)]
    try:
        await _serve("filter", Starlette(routes=routes), settings, [source.run()])
    finally:
        await pool.close()
        await sender.close()
        await _close_channels(channels)


class _Pinned:
    """The generation whose Triggers all have their start position recorded.

    The pool starts a worker per new Trigger, but a LATEST start is pinned asynchronously (the
    embedded log's INIT, a Kafka partition assignment); reporting the generation before that
    would let the controller call a Trigger Ready while events sent next could still be skipped.
    Every Subscription's lag() waits for the pinned position, so it is the barrier.
    """

    def __init__(self, pool: WorkerPool, timeout: float = 30.0) -> None:
        self.pool = pool
        self.timeout = timeout
        self.generation = -1
        self._settled: set[str] = set()

    async def settle(self, c: Contract) -> None:
        workers = dict(self.pool.workers)
        fresh = [w for uid, w in workers.items() if uid not in self._settled]

        async def pin(worker: TriggerWorker) -> None:
            try:
                await asyncio.wait_for(worker.subscription.lag(), self.timeout)
            except (
                Exception
            ) as exc:  # reported by /readyz through the pool; never block a generation
                log.warning(
                    "trigger %s: start position not confirmed: %r", worker.trigger.name, exc
                )

        await asyncio.gather(*(pin(w) for w in fresh))
        self._settled = set(workers)
        self.generation = c.generation


async def _controller(args: argparse.Namespace) -> None:
    from kbroker.controller.kube import client as kube
    from kbroker.controller.kube.reconciler import KubeController, KubeSettings
    from kbroker.ingress.app import health_routes

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
        resync_interval=args.resync,
        finalize_timeout=args.finalize_timeout,
    )
    run_settings = _settings(args)
    channels = await _open_channels(run_settings)
    client = await kube.connect(args.kubeconfig)
    controller = KubeController(client, settings, channels)

    async def ready() -> tuple[bool, str]:
        if controller.contract is None:
            return False, "no contract written yet"
        return True, f"generation {controller.contract.generation}"

    generation = _generation_route(
        lambda: controller.contract.generation if controller.contract else -1
    )
    app = Starlette(routes=[*health_routes(ready), generation])
    try:
        await _serve("controller", app, run_settings, [controller.run()])
    finally:
        await client.close()
        await _close_channels(channels)
