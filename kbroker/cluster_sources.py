"""The controller deployable's sources: PingSource firing, ApiServerSource watches, SinkBinding.

Cluster mode runs them in the controller process while it holds the Lease `kbroker-sources`
(controller/kube/sources_lease): exactly one process fires each PingSource tick and sends each API
server change, even when two controllers run (a rollout, a partitioned node; the Deployment has one
replica and the `Recreate` strategy besides). The
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
import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from kbroker.controller.kube.api import KubeClient, Obj
from kbroker.controller.kube.reconciler import KubeController
from kbroker.controller.kube.sources_apiserver import ApiServerSources
from kbroker.controller.kube.sources_lease import Lease
from kbroker.controller.kube.sources_sinkbinding import SinkBindings
from kbroker.core import contract as ct
from kbroker.core.channel import Channel
from kbroker.core.contract_apiserver import ApiServerSource
from kbroker.sources import apiserver
from kbroker.sources.emit import SinkEmitter
from kbroker.sources.ping import PingRunner
from kbroker.sources.ping_state import TickRecord

Task = Callable[[], Coroutine[Any, Any, None]]
log = logging.getLogger("kbroker.sources")


def task(
    controller: KubeController,
    client: KubeClient,
    server: str,
    channels: Mapping[str, Channel],
    data_dir: Path,
    resync: float = 5.0,
    lease: Lease | None = None,
) -> Task:
    """The sources, run next to the reconcile loop while this process holds the Lease."""
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

    def parts() -> list[Task]:
        """Fresh components for one term: nothing in memory from an earlier term (a PingRunner
        would otherwise send the ticks another controller sent meanwhile)."""
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

    async def lead() -> None:
        assert lease is not None
        while True:
            await lease.acquire()
            running = [asyncio.create_task(p(), name="sources") for p in parts()]
            holding = asyncio.create_task(lease.hold(), name="sources-lease")
            try:
                done, _ = await asyncio.wait(
                    [holding, *running], return_when=asyncio.FIRST_COMPLETED
                )
            except asyncio.CancelledError:
                await _stop([holding, *running])
                await lease.release()  # the next controller starts at once
                raise
            await _stop([holding, *running])
            for t in done:
                if t is not holding and not t.cancelled() and t.exception() is not None:
                    log.error("sources stopped: %r; starting again", t.exception())

    async def alone() -> None:
        await asyncio.gather(*(p() for p in parts()))

    return lead if lease is not None else alone


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
