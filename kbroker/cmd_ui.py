"""`kbroker ui`: the trigger console as its own deployable, for cluster mode.

On Kubernetes the broker runs as controller, ingress and filter; none of them serves pages. This
process serves the console under `/-/ui/`: objects and writes through the API server (with its
own ServiceAccount, kbroker/ui_kube.py), the contract from the controller's ConfigMap, events
read from the broker's channel (Kafka) without being a Trigger, delivery records polled from the
filter processes' `/records`.

It refuses to start without a token (`--token-file`, a mounted Secret): a console that creates
Triggers must never be open by accident. Payloads are hidden unless `--show-payloads`; subscriber
URIs on loopback or link-local addresses are refused unless `--allow-private-uris`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from kbroker import ops_guard, ui_deliveries, ui_events, wiring, wiring_http
from kbroker.core import logs
from kbroker.core.contract_source import ContractHolder
from kbroker.core.settings import RunSettings, ShutdownSettings, env, log_format_default
from kbroker.ui import app as console_app
from kbroker.ui.context import ConsoleContext, ConsoleSettings

log = logging.getLogger("kbroker")

HELP = "cluster mode: the trigger console (pages under /-/ui/), behind a bearer token"
RECORDS_POLL = 2.0  # seconds between polls of the filter processes' delivery records


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ui",
        help=HELP,
        description="Serve the trigger console for a cluster: reads and writes through the API "
        "server, events from the broker's channel, delivery records from the filter processes.",
    )
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: in-cluster)")
    p.add_argument(
        "--token-file",
        type=Path,
        default=Path(env("KBROKER_UI_TOKEN_FILE") or "") if env("KBROKER_UI_TOKEN_FILE") else None,
        help="file holding the bearer token every request needs (required; a mounted Secret)",
    )
    p.add_argument("--host", default=env("KBROKER_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("KBROKER_PORT", "8080") or 8080))
    p.add_argument("--system-namespace", default=env("KBROKER_SYSTEM_NAMESPACE", "kbroker-system"))
    p.add_argument(
        "--contract-configmap", default=env("KBROKER_CONTRACT_CONFIGMAP", "kbroker-contract")
    )
    p.add_argument("--kafka", metavar="BOOTSTRAP", default=env("KBROKER_KAFKA"))
    p.add_argument(
        "--filter-url",
        action="append",
        default=None,
        metavar="URL",
        help="a filter process's operational base URL, for delivery records (repeat)",
    )
    p.add_argument(
        "--show-payloads", action="store_true", help="show event data in the tail and inspector"
    )
    p.add_argument(
        "--allow-private-uris",
        action="store_true",
        help="allow subscriber URIs on loopback or link-local addresses (refused by default)",
    )
    p.add_argument("--log-level", default="info", choices=logs.LEVELS)
    p.add_argument(
        "--log-format", default=log_format_default(), type=logs.log_format, choices=logs.FORMATS
    )
    p.set_defaults(func=main)


def read_token(path: Path | None) -> str:
    """The console's token; a StartupError when there is none (never serve unauthenticated)."""
    if path is None:
        raise wiring.StartupError(
            "kbroker ui needs --token-file (or KBROKER_UI_TOKEN_FILE): it will not serve "
            "the console without authentication"
        )
    token = ops_guard.TokenFile(path).read().decode().strip()
    if not token:
        raise wiring.StartupError(f"token file {path} is missing or empty")
    return token


def main(args: argparse.Namespace) -> int:
    logs.configure_logging(args.log_format, args.log_level)
    return wiring.run_process(lambda: serve(args))


async def serve(args: argparse.Namespace) -> None:
    from kbroker.controller.kube import client as kube_client
    from kbroker.controller.kube.contract_map import ContractStore
    from kbroker.ui_kube import KubeObjects

    token = read_token(args.token_file)
    sock = wiring.bind(args.host, args.port)
    try:
        kube = await kube_client.connect(args.kubeconfig)
    except Exception as exc:
        raise wiring.StartupError(str(exc)) from None
    holder = ContractHolder()
    objects = KubeObjects(
        kube, ContractStore(kube, args.system_namespace, args.contract_configmap), holder
    )
    settings = dataclasses.replace(
        RunSettings(), kafka_bootstrap=args.kafka, data_dir=Path("/tmp/kbroker-ui")
    )
    channels = wiring.open_channels(settings)
    channels.pop("embedded", None)  # a pod's embedded log is nobody's broker
    await wiring.start_channels(channels, required=False)
    deliveries = ui_deliveries.HttpDeliveries(args.filter_url or [], token)
    ctx = ConsoleContext(
        objects=objects,
        events=ui_events.ChannelEvents(channels, holder),
        deliveries=deliveries,
        settings=ConsoleSettings(
            show_payloads=args.show_payloads,
            cluster=True,
            allow_private_uris=args.allow_private_uris,
            token=token,
        ),
    )

    async def poll_records() -> None:
        while True:
            await deliveries.refresh()
            await asyncio.sleep(RECORDS_POLL)

    async def root(_: Request) -> Response:
        return RedirectResponse(console_app.PREFIX + "/", status_code=307)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    app = Starlette(
        routes=[
            Route("/", root),
            Route("/healthz", healthz),
            Route("/readyz", healthz),
            *console_app.mount(ctx),
        ]
    )
    stop = asyncio.Event()
    remove = wiring_http.stop_on_signals(stop)
    background = [
        asyncio.create_task(objects.follow_contract(), name="contract"),
        asyncio.create_task(poll_records(), name="records"),
    ]
    host, port = sock.getsockname()[:2]
    try:
        await wiring_http.serve(
            "kbroker ui",
            app,
            [sock],
            ShutdownSettings(),
            stop,
            background=background,
            ready_line=f"kbroker ui ready on http://{host}:{port}/-/ui/",
        )
    finally:
        remove()
        await wiring.close_channels(channels)
        await kube.close()
