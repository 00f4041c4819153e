"""Deleting a removed Broker's stored events, and a removed Trigger's position, only after a grace.

Why this exists: deleting a Broker deletes every event it stored, and a Trigger's position is what
says which of them it still owes its subscriber. A configuration source can lose sight of an object
for a moment without anyone meaning to remove it: an editor that truncates a file before writing
it again, a file moved out and back, a ConfigMap volume swapping its symlinks. So a Broker that
leaves the configuration keeps its storage for `grace` seconds, and a Trigger (or a Trigger whose
Broker left) keeps its position as long; if the object comes back in time nothing is deleted and
delivery resumes where it stopped. When the grace runs out the storage goes, with a warning that
names the Broker and how many events its triggers had not consumed yet.

What it refuses: deleting anything that is in the current configuration; keeping tombstones on
disk. A process that stops during a grace period leaves that Broker's storage where it is (the
next process never saw the Broker): files left behind rather than events lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from kbroker.core import contract
from kbroker.core.channel import Channel, ChannelError

log = logging.getLogger(__name__)

LAG_TIMEOUT = 10.0  # seconds to count a removed broker's unconsumed events before giving up


@dataclass(slots=True)
class _Pending:
    broker: contract.Broker
    trigger: contract.Trigger | None  # None: the broker's storage; else this trigger's position
    task: asyncio.Task[None]


class Retirement:
    """Pending deletions, each a task that sleeps `grace` seconds and then deletes."""

    def __init__(self, channels: Mapping[str, Channel], grace: float) -> None:
        self._channels = channels
        self._grace = grace
        self._brokers: dict[contract.BrokerKey, _Pending] = {}
        self._triggers: dict[contract.TriggerUid, _Pending] = {}

    @property
    def pending(self) -> tuple[str, ...]:
        """Brokers removed from the configuration whose storage is still kept."""
        return tuple(sorted(self._brokers))

    async def retire(self, previous: contract.Contract, current: contract.Contract) -> None:
        """Once `current` is in force: a Broker of `previous` missing from it is deleted after the
        grace; a pending Broker or Trigger that is back in `current` is kept."""
        present = {b.key for b in current.brokers}
        for key in [k for k in self._brokers if k in present]:
            self._brokers.pop(key).task.cancel()
            log.info("broker %s is back within the grace period: its events are kept", key)
        for t in current.triggers:
            pending = self._triggers.get(t.uid)
            # Back on the same broker, and that broker is here: the kept position is its own.
            if (
                pending is not None
                and t.broker_key == pending.broker.key
                and t.broker_key in present
            ):
                self._triggers.pop(t.uid).task.cancel()
                log.info("trigger %s/%s is back within the grace period", t.namespace, t.name)
        for b in previous.brokers:
            if b.key in present or b.key in self._brokers:
                continue
            if self._grace <= 0:
                await self._delete_broker(b)
                continue
            log.info(
                "broker %s removed from the configuration: its events are kept for %gs",
                b.key,
                self._grace,
            )
            task = asyncio.create_task(self._after_grace(b), name=f"retire:{b.key}")
            self._brokers[b.key] = _Pending(b, None, task)

    async def forget(
        self, channel: Channel, broker: contract.Broker, trigger: contract.Trigger
    ) -> None:
        """The WorkerPool's way to forget a stopped trigger's position: after the grace."""
        if self._grace <= 0:
            await channel.delete_subscription(broker, trigger)
            return
        old = self._triggers.pop(trigger.uid, None)
        if old is not None:
            old.task.cancel()
        task = asyncio.create_task(
            self._forget_after_grace(channel, broker, trigger), name=f"forget:{trigger.uid}"
        )
        self._triggers[trigger.uid] = _Pending(broker, trigger, task)

    async def close(self) -> None:
        """Stop waiting: whatever is still pending keeps its storage."""
        pending = [*self._brokers.values(), *self._triggers.values()]
        if self._brokers:
            log.warning(
                "stopping within the grace period of removed broker(s) %s: their storage is "
                "left in place",
                ", ".join(sorted(self._brokers)),
            )
        self._brokers, self._triggers = {}, {}
        for p in pending:
            p.task.cancel()
        await asyncio.gather(*(p.task for p in pending), return_exceptions=True)

    async def _after_grace(self, broker: contract.Broker) -> None:
        await asyncio.sleep(self._grace)
        # From here on the deletion runs to the end: the broker is no longer pending.
        self._brokers.pop(broker.key, None)
        await self._delete_broker(broker)

    async def _forget_after_grace(
        self, channel: Channel, broker: contract.Broker, trigger: contract.Trigger
    ) -> None:
        await asyncio.sleep(self._grace)
        going = self._brokers.get(broker.key)
        if going is not None:
            # Its broker is going too: that deletion counts what this trigger had left and drops
            # the position with the storage. If the broker comes back instead, forget it here.
            await asyncio.wait([going.task])
        mine = self._triggers.get(trigger.uid)
        if mine is None or mine.task is not asyncio.current_task():
            return  # the trigger came back, or its broker's deletion took the position along
        del self._triggers[trigger.uid]
        try:
            await channel.delete_subscription(broker, trigger)
        except ChannelError as exc:
            log.error(
                "trigger %s/%s: forgetting its position: %s", trigger.namespace, trigger.name, exc
            )

    async def _delete_broker(self, broker: contract.Broker) -> None:
        channel = self._channels.get(broker.channel)
        if channel is None:
            return
        # The positions of its triggers go with it; they also say how much is being dropped.
        triggers = [p for p in self._triggers.values() if p.broker.key == broker.key]
        for p in triggers:
            assert p.trigger is not None
            self._triggers.pop(p.trigger.uid, None)
            p.task.cancel()
        lags = {
            p.trigger.name: await _lag(channel, broker, p.trigger) for p in triggers if p.trigger
        }
        for p in triggers:
            assert p.trigger is not None
            with contextlib.suppress(ChannelError):
                await channel.delete_subscription(broker, p.trigger)
        try:
            await channel.delete_broker(broker)
        except ChannelError as exc:
            log.error("broker %s: deleting its storage failed: %s", broker.key, exc)
            return
        known = [n for n in lags.values() if n is not None]
        dropped = max(known, default=0)
        detail = ", ".join(f"{t}={'?' if n is None else n}" for t, n in sorted(lags.items()))
        if dropped or None in lags.values():
            log.warning(
                "broker %s: removed from the configuration %gs ago; storage deleted, "
                "%d unconsumed events dropped (unconsumed per trigger: %s)",
                broker.key,
                self._grace,
                dropped,
                detail,
            )
        else:
            log.info("broker %s: removed from the configuration; storage deleted", broker.key)


async def _lag(channel: Channel, broker: contract.Broker, trigger: contract.Trigger) -> int | None:
    """Events after the trigger's committed position, or None when the channel cannot say."""
    sub = channel.subscribe(broker, trigger)
    try:
        return await asyncio.wait_for(sub.lag(), LAG_TIMEOUT)
    except (ChannelError, TimeoutError):
        return None
    finally:
        with contextlib.suppress(Exception):
            await sub.close()
