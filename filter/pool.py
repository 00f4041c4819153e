"""The dispatcher: one worker per trigger, reconciled against each contract generation.

New triggers get a worker (and a subscription starting at the log's end, or its beginning when
annotated); changed triggers are updated in place without losing their position; removed triggers
are stopped and their position forgotten (by default at once; the wiring may pass a `forget` that
waits, so a trigger that comes back soon resumes where it stopped). A trigger whose broker uses a
channel this process does not run is reported, not started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from kbroker.core import contract
from kbroker.core.channel import Channel
from kbroker.core.settings import DispatcherSettings
from kbroker.filter.dispatch import Dispatcher
from kbroker.filter.worker import TriggerWorker

log = logging.getLogger(__name__)

Forget = Callable[[Channel, contract.Broker, contract.Trigger], Awaitable[None]]


async def forget_now(channel: Channel, broker: contract.Broker, trigger: contract.Trigger) -> None:
    await channel.delete_subscription(broker, trigger)


@dataclass(slots=True)
class _Running:
    worker: TriggerWorker
    task: asyncio.Task[None]


class WorkerPool:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        dispatcher: Dispatcher,
        settings: DispatcherSettings,
        forget: Forget = forget_now,
    ) -> None:
        self.channels = channels
        self.dispatcher = dispatcher
        self.settings = settings
        self._forget = forget
        self.generation = -1
        self._running: dict[contract.TriggerUid, _Running] = {}
        self._lock = asyncio.Lock()

    @property
    def workers(self) -> dict[contract.TriggerUid, TriggerWorker]:
        return {uid: r.worker for uid, r in self._running.items()}

    def behind(self) -> dict[str, float]:
        """Per broker key, the most any of its triggers' delivery trails ingress, in seconds."""
        out: dict[str, float] = {}
        for r in self._running.values():
            w = r.worker
            if w.behind > out.get(w.broker.key, 0.0):
                out[w.broker.key] = w.behind
        return out

    def healthy(self) -> bool:
        return all(not r.task.done() for r in self._running.values())

    async def apply(self, c: contract.Contract) -> None:
        async with self._lock:
            wanted = {t.uid: t for t in c.triggers}
            for uid in list(self._running):
                trigger = wanted.get(uid)
                broker = c.broker(trigger.broker_key) if trigger else None
                running = self._running[uid]
                if trigger is None or broker is None:
                    await self._stop(uid, forget=True)
                elif broker != running.worker.broker:
                    await self._stop(uid, forget=False)  # e.g. channel config changed: reopen
                elif trigger != running.worker.trigger:
                    running.worker.update(trigger)
            for uid, trigger in wanted.items():
                if uid in self._running:
                    continue
                broker = c.broker(trigger.broker_key)
                if broker is None:
                    continue
                channel = self.channels.get(broker.channel)
                if channel is None:
                    log.error(
                        "trigger %s: no %r channel in this process", trigger.name, broker.channel
                    )
                    continue
                subscription = channel.subscribe(broker, trigger)
                worker = TriggerWorker(
                    trigger,
                    broker,
                    subscription,
                    self.dispatcher,
                    fetch_batch=self.settings.fetch_batch,
                    commit_interval=self.settings.commit_interval,
                )
                task = asyncio.create_task(worker.run(), name=f"trigger:{trigger.name}")
                self._running[uid] = _Running(worker, task)
            self.generation = c.generation

    async def _stop(self, uid: contract.TriggerUid, forget: bool) -> None:
        running = self._running.pop(uid)
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)
        await running.worker.commit()
        await running.worker.subscription.close()
        if forget:
            channel = self.channels.get(running.worker.broker.channel)
            if channel is not None:
                await self._forget(channel, running.worker.broker, running.worker.trigger)

    async def close(self, drain_timeout: float = 5.0) -> None:
        async with self._lock:
            for running in self._running.values():
                await running.worker.drain(drain_timeout)
            for uid in list(self._running):
                await self._stop(uid, forget=False)
