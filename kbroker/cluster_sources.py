"""The controller deployable's sources: PingSource firing, ApiServerSource watches, SinkBinding.

Cluster mode runs them in the controller process, the one process of which Kubernetes runs one at
a time (config/500-deployments.yaml: one replica, `Recreate`, so an old pod is gone before a new
one starts): exactly one process fires each PingSource tick and sends each API server change. The
controller already holds the contract (which Brokers exist, where their storage is) and opens the
channels, so an event whose sink is a kbroker Broker is appended to the Broker's channel at
durability `all`, exactly as the ingress would store it; other sinks get an HTTP POST with retries.

Its state lives in the controller's --data folder: the last tick of each PingSource (no tick twice,
sources/ping_state) and the last resourceVersion of each ApiServerSource watch (a restart resumes,
controller/kube/sources_apiserver). Keep that folder on a volume to keep those across pod restarts;
on an emptyDir a new pod starts from "now" (Knative's behaviour: missed ticks and changes skipped).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from kbroker.controller.kube.api import KubeClient, Obj
from kbroker.controller.kube.reconciler import KubeController
from kbroker.controller.kube.sources_apiserver import ApiServerSources
from kbroker.controller.kube.sources_sinkbinding import SinkBindings
from kbroker.core import contract as ct
from kbroker.core.channel import Channel
from kbroker.core.contract_apiserver import ApiServerSource
from kbroker.sources import apiserver
from kbroker.sources.emit import SinkEmitter
from kbroker.sources.ping import PingRunner
from kbroker.sources.ping_state import TickRecord

Task = Callable[[], Coroutine[Any, Any, None]]


def tasks(
    controller: KubeController,
    client: KubeClient,
    server: str,
    channels: Mapping[str, Channel],
    data_dir: Path,
    resync: float = 5.0,
) -> list[Task]:
    """The background tasks the controller process runs next to its reconcile loop."""
    index: dict[str, ct.Broker] = {}
    indexed: list[ct.Contract | None] = [None]

    def current() -> ct.Contract:
        return controller.contract or ct.Contract()

    def broker(key: str) -> ct.Broker | None:
        c = controller.contract
        if c is not indexed[0]:
            index.clear()
            index.update({b.key: b for b in (c.brokers if c else ())})
            indexed[0] = c
        return index.get(key)

    def served() -> set[str]:
        c = controller.contract
        return {b.key for b in c.brokers} if c else set()

    emitter = SinkEmitter(channels, broker)
    pings = PingRunner(current, TickRecord(data_dir / "pingsources"), emitter)

    async def deliver(src: ApiServerSource, verb: str, obj: Obj) -> bool:
        return await emitter.emit(src, apiserver.event_for(src, verb, obj))

    watches = ApiServerSources(
        client, deliver, server, data_dir / "apiserversources", served, resync=resync
    )
    bindings = SinkBindings(client, served, resync=resync)

    async def fire() -> None:
        stopping = asyncio.Event()
        try:
            await pings.run(stopping)
        finally:
            await pings.close()

    return [fire, watches.run, bindings.run]
