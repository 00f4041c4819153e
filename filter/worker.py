"""One trigger's loop: read -> filter -> dispatch -> commit, ordered or unordered, bounded.

Unordered: up to `max_in_flight` dispatches run at once; positions are committed contiguously (the
committed offset is the highest one below which every record has a final outcome), so a crash
replays rather than skips. Ordered: records with the same `partitionkey` (records without one: the
same partition) are dispatched one after another; different keys still run in parallel.

A worker's trigger can be replaced while it runs (a changed filter, subscriber or delivery spec):
the next record uses the new one and the position is kept, so an edit loses nothing.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time

from kbroker.core import contract, filters
from kbroker.core.channel import ChannelError, Record, Subscription
from kbroker.filter.dispatch import Dispatcher

log = logging.getLogger(__name__)


class OffsetTracker:
    """Per partition: offsets in read order, and which are done; yields what may be committed."""

    def __init__(self) -> None:
        self._pending: dict[int, collections.deque[int]] = {}
        self._done: dict[int, set[int]] = {}

    def add(self, record: Record) -> None:
        self._pending.setdefault(record.partition, collections.deque()).append(record.offset)

    def done(self, record: Record) -> None:
        self._done.setdefault(record.partition, set()).add(record.offset)

    def committable(self) -> list[tuple[int, int]]:
        out = []
        for partition, queue in self._pending.items():
            done = self._done.get(partition, set())
            last = None
            while queue and queue[0] in done:
                last = queue.popleft()
                done.discard(last)
            if last is not None:
                out.append((partition, last))
        return out

    def in_flight(self) -> int:
        return sum(len(q) for q in self._pending.values())


class TriggerWorker:
    def __init__(
        self,
        trigger: contract.Trigger,
        broker: contract.Broker,
        subscription: Subscription,
        dispatcher: Dispatcher,
        fetch_batch: int = 500,
        commit_interval: float = 0.2,
    ) -> None:
        self.broker = broker
        self.subscription = subscription
        self.dispatcher = dispatcher
        self.fetch_batch = fetch_batch
        self.commit_interval = commit_interval
        self.tracker = OffsetTracker()
        self.delivered = 0
        self.behind = 0.0  # seconds between the newest event just read and its reading
        self._since = time.time()  # a replay of events older than the worker is not "behind"
        self._tasks: set[asyncio.Task[None]] = set()
        self._chains: dict[str, asyncio.Task[None]] = {}
        self.stopping = False
        self.update(trigger)

    def update(self, trigger: contract.Trigger) -> None:
        self.trigger = trigger
        self.predicate = filters.build(trigger.filters)
        self.records = self.dispatcher.recorder.ring(trigger)
        self._slots = asyncio.Semaphore(max(1, trigger.max_in_flight))

    async def run(self) -> None:
        last_commit = time.monotonic()
        try:
            while not self.stopping:
                try:
                    # Idle triggers wait long (cheap by the thousand); busy ones return to commit.
                    wait = self.commit_interval if self._tasks else 1.0
                    records = await self.subscription.fetch(self.fetch_batch, wait)
                except ChannelError as exc:
                    log.warning("trigger %s: read failed: %s", self.trigger.name, exc)
                    await asyncio.sleep(1.0)
                    continue
                # How far delivery trails ingress, for ingress/priority.py (0: caught up).
                newest = records[-1].envelope.arrival if records else 0.0
                self.behind = time.time() - newest if newest > self._since else 0.0
                matched = 0
                for record in records:
                    self.tracker.add(record)
                    if not self.predicate(record.envelope.event.attributes):
                        self.tracker.done(record)
                        continue
                    matched += 1
                    await self._slots.acquire()
                    self._start(record, self._slots)
                if matched:
                    self.records.matched(matched)
                now = time.monotonic()
                if now - last_commit >= self.commit_interval or not records:
                    await self.commit()
                    last_commit = now
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start(self, record: Record, slots: asyncio.Semaphore) -> None:
        if self.trigger.order is contract.DeliveryOrder.ORDERED:
            key = record.key if record.key is not None else f"\0partition-{record.partition}"
            previous = self._chains.get(key)
            task = asyncio.create_task(self._deliver(record, slots, previous))
            self._chains[key] = task
            task.add_done_callback(functools.partial(self._forget_chain, key))
        else:
            task = asyncio.create_task(self._deliver(record, slots, None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget_chain(self, key: str, task: asyncio.Task[None]) -> None:
        if self._chains.get(key) is task:
            del self._chains[key]

    async def _deliver(
        self, record: Record, slots: asyncio.Semaphore, previous: asyncio.Task[None] | None
    ) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])
            env = record.envelope
            extra: tuple[tuple[str, str], ...] = ()
            if env.traceparent:
                extra = (("traceparent", env.traceparent),)
                if env.tracestate:
                    extra += (("tracestate", env.tracestate),)
            await self.dispatcher.dispatch(env.event, self.trigger, self.broker, extra, env.arrival)
            self.delivered += 1
            self.tracker.done(record)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug, not an outcome: keep the position so the event is replayed after a restart.
            log.exception(
                "trigger %s: dispatch crashed; event will be redelivered", self.trigger.name
            )
        finally:
            slots.release()

    def in_flight(self) -> int:
        """Dispatches running now (for the in-flight gauge)."""
        return len(self._tasks)

    async def commit(self) -> None:
        for partition, offset in self.tracker.committable():
            try:
                await self.subscription.commit(partition, offset)
            except ChannelError as exc:
                log.warning("trigger %s: commit failed: %s", self.trigger.name, exc)

    async def drain(self, timeout: float) -> None:
        """Stop reading, wait for in-flight dispatches (bounded), then commit what finished."""
        self.stopping = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        await self.commit()
