"""MemoryChannel: the Channel Protocol held in memory, for fast tests of whatever sits on a channel.

Why it exists: the dispatcher, the ingress routes and the pool reconciler are tested against a
channel, and a real log would make those tests slow and give them a disk to worry about. This fake
keeps the Protocol's semantics that callers rely on (order, per-trigger positions that only move
forward, LATEST/EARLIEST starts, lag, waking a waiting fetch on append) and nothing else.

What it refuses to do: durability (every level is "in memory"), retention, size limits, several
partitions (everything is partition 0). State lives in a `MemoryStore`; give the same store to a
second `MemoryChannel` to simulate a restart that keeps the log (the conformance suite does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from kbroker.core import contract
from kbroker.core.channel import ChannelUnavailable, Envelope, Record


@dataclass(eq=False)
class _Log:
    """One broker's events; offset n is at index n - 1 (offsets start at 1, contiguous)."""

    records: list[Record] = field(default_factory=list)
    # Replaced after each append so every waiter of the previous generation wakes exactly once.
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def end(self) -> int:
        return len(self.records)

    def notify(self) -> None:
        self.wake.set()
        self.wake = asyncio.Event()


@dataclass(eq=False)
class MemoryStore:
    """Everything a MemoryChannel holds; outlives the channel so a "reopen" can find it again."""

    logs: dict[contract.BrokerKey, _Log] = field(default_factory=dict)
    positions: dict[tuple[contract.BrokerKey, contract.TriggerUid], int] = field(
        default_factory=dict
    )


def _key_of(envelope: Envelope) -> str | None:
    value = envelope.event.get("partitionkey")
    return None if value is None else str(value)


class MemorySubscription:
    """A trigger's reader over a `_Log`; its committed position lives in the store."""

    def __init__(self, store: MemoryStore, broker: contract.BrokerKey, uid: contract.TriggerUid):
        self._store = store
        self._broker = broker
        self._uid = uid
        self._cursor = store.positions[(broker, uid)]
        self._closed = False

    def _log(self) -> _Log:
        log = self._store.logs.get(self._broker)
        if log is None:
            raise ChannelUnavailable(f"broker {self._broker} has no log")
        return log

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._closed:
            log = self._log()
            wake = log.wake
            if log.end > self._cursor:
                out = log.records[self._cursor : self._cursor + max_records]
                self._cursor = out[-1].offset
                return out
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except TimeoutError:
                break
        return []

    async def commit(self, partition: int, offset: int) -> None:
        if partition != 0:
            raise ValueError(f"memory channel has partition 0 only, not {partition}")
        key = (self._broker, self._uid)
        self._store.positions[key] = max(self._store.positions.get(key, 0), offset)

    async def lag(self) -> int:
        committed = self._store.positions.get((self._broker, self._uid), 0)
        return max(0, self._log().end - committed)

    async def close(self) -> None:
        self._closed = True


class MemoryChannel:
    """The Channel Protocol over a `MemoryStore` (a fresh one unless given)."""

    name = "memory"

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store if store is not None else MemoryStore()
        # Standing per-broker problems a test sets to stand in for a damaged backend.
        self.problems: dict[contract.BrokerKey, str] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        # Wake every waiting fetch so it re-checks and returns instead of sleeping to its timeout.
        for log in self.store.logs.values():
            log.notify()

    def problem(self, broker: contract.Broker) -> str | None:
        return self.problems.get(broker.key)

    def _log(self, broker: contract.Broker) -> _Log:
        return self.store.logs.setdefault(broker.key, _Log())

    async def ensure_broker(self, broker: contract.Broker) -> None:
        self._log(broker)

    async def delete_broker(self, broker: contract.Broker) -> None:
        log = self.store.logs.pop(broker.key, None)
        for k in [k for k in self.store.positions if k[0] == broker.key]:
            del self.store.positions[k]
        if log is not None:
            log.notify()

    async def append(
        self,
        broker: contract.Broker,
        envelopes: Sequence[Envelope],
        durability: contract.Durability,
    ) -> None:
        log = self._log(broker)
        for env in envelopes:
            log.records.append(Record(0, log.end + 1, _key_of(env), env))
        if envelopes:
            log.notify()

    def subscribe(self, broker: contract.Broker, trigger: contract.Trigger) -> MemorySubscription:
        log = self._log(broker)
        start = 0 if trigger.start_from is contract.StartFrom.EARLIEST else log.end
        self.store.positions.setdefault((broker.key, trigger.uid), start)
        return MemorySubscription(self.store, broker.key, trigger.uid)

    async def delete_subscription(self, broker: contract.Broker, trigger: contract.Trigger) -> None:
        self.store.positions.pop((broker.key, trigger.uid), None)

    async def healthy(self) -> bool:
        return True
