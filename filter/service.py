"""FilterService: the dispatcher side of a process, built from settings and its collaborators.

Why a module of its own: `kbroker run` and the `kbroker filter` deployable run the same
dispatcher (an HTTP sender, the Dispatcher with its metric hooks and tracing, one TriggerWorker per
Trigger in a WorkerPool that follows the contract), and both report the same readiness and the
same scrape-time trigger state. Building it here keeps the CLI modules down to wiring.

What it refuses: reading settings or the environment (it is handed them), serving HTTP (the caller
mounts `ready` and `trigger_states` where it wants), and knowing where contracts come from (it
subscribes to a ContractHolder).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from kbroker.core import contract, metrics, telemetry, tls
from kbroker.core.channel import Channel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.reporters import DispatchReporter, Silent
from kbroker.core.settings import DispatcherSettings
from kbroker.filter.dispatch import Dispatcher
from kbroker.filter.httpclient import HttpClient
from kbroker.filter.pool import Forget, WorkerPool, forget_now
from kbroker.filter.sender import AiohttpSender, Sender
from kbroker.filter.tokens import TokenSender
from kbroker.filter.worker import TriggerWorker

log = logging.getLogger(__name__)


class FilterService:
    """Sender + Dispatcher + WorkerPool, subscribed to `holder`; `close()` stops them in order."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        holder: ContractHolder,
        settings: DispatcherSettings,
        hooks: DispatchReporter | None = None,
        tracing: telemetry.Tracing | None = None,
        sender: Sender | None = None,
        pin_generations: bool = False,
        forget: Forget = forget_now,
    ) -> None:
        self.holder = holder
        # Adds OIDC tokens for destinations that declare an audience (authentication-oidc).
        self.sender = TokenSender(
            sender
            or HttpClient(
                fallback=AiohttpSender(
                    ssl_context=tls.client_context(settings.subscriber_ca, settings.ingress_ca)
                    if settings.subscriber_ca or settings.ingress_ca
                    else None
                )
            ),
            holder,
        )
        self.dispatcher = Dispatcher(
            self.sender,
            settings,
            hooks=hooks or Silent(),
            tracing=tracing or telemetry.disabled(),
        )
        self.pool = WorkerPool(channels, self.dispatcher, settings, forget=forget)
        holder.subscribe(self.pool.apply)
        holder.subscribe(self._retain_records)
        # Only a separate filter process needs it: in one process the contract is published to
        # the pool before anyone can ask which generation is served.
        self.pinned = PinnedGeneration(self.pool) if pin_generations else None
        if self.pinned is not None:
            holder.subscribe(self.pinned.settle)

    async def _retain_records(self, c: contract.Contract) -> None:
        """Delivery records of Triggers gone from the contract are dropped (bounded memory)."""
        self.dispatcher.recorder.retain({(t.namespace, t.name) for t in c.triggers})

    @property
    def generation(self) -> int:
        """The generation served: pinned when pinning, else the one the pool applied."""
        return self.pinned.generation if self.pinned is not None else self.pool.generation

    async def ready(self, not_loaded: str = "configuration not loaded yet") -> tuple[bool, str]:
        if not self.holder.loaded:
            return False, not_loaded
        return (True, "ok") if self.pool.healthy() else (False, "a trigger worker stopped")

    async def trigger_states(self) -> list[metrics.TriggerState]:
        """Each running trigger's lag and in-flight count, for a scrape of /metrics."""
        states = []
        for worker in self.pool.workers.values():
            t = worker.trigger
            try:
                lag: int | None = await worker.subscription.lag()
            except Exception:  # best effort: a backend hiccup must not break a scrape
                lag = None
            states.append(
                metrics.TriggerState(t.namespace, t.name, t.broker, lag, worker.in_flight())
            )
        return states

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Let running deliveries finish (up to `drain_timeout`), commit, then close the sender."""
        await self.pool.close(drain_timeout)
        await self.sender.close()


class PinnedGeneration:
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

    async def settle(self, c: contract.Contract) -> None:
        workers = dict(self.pool.workers)
        fresh = [w for uid, w in workers.items() if uid not in self._settled]

        async def pin(worker: TriggerWorker) -> None:
            try:
                await asyncio.wait_for(worker.subscription.lag(), self.timeout)
            except Exception as exc:  # /readyz reports it through the pool; never block
                log.warning(
                    "trigger %s: start position not confirmed: %r", worker.trigger.name, exc
                )

        await asyncio.gather(*(pin(w) for w in fresh))
        self._settled = set(workers)
        self.generation = c.generation
