"""Trigger workers over the in-memory channel: in-flight bound, per-key order, contiguous commits.

The subscriber here is a fake Sender (timing is the point, not HTTP); the real-HTTP path is
covered by test_dispatch.py and the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from kbroker.core import contract, events
from kbroker.core.channel import Envelope
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.settings import DispatcherSettings
from kbroker.filter.dispatch import Dispatcher
from kbroker.filter.pool import WorkerPool
from kbroker.filter.sender import Response

BROKER = contract.Broker("ns", "b", "ub", "http://unused/ns/b", channel="memory")


class SlowSender:
    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self.seen: list[tuple[str, str]] = []  # (partitionkey, id) in arrival order
        self.done = asyncio.Event()
        self.expect = 0

    async def send(
        self, url: str, headers: Sequence[tuple[str, str]], body: bytes, timeout: float | None
    ) -> Response:
        h = dict(headers)
        self.current += 1
        self.peak = max(self.peak, self.current)
        self.seen.append((h.get("ce-partitionkey", ""), h["ce-id"]))
        await asyncio.sleep(random.uniform(0.0, 0.01))
        self.current -= 1
        if len(self.seen) >= self.expect:
            self.done.set()
        return Response(200, {}, (), b"")

    async def close(self) -> None:
        pass


def trig(**kw: Any) -> contract.Trigger:
    return contract.Trigger(
        "ns",
        "t",
        contract.TriggerUid("t1"),
        "b",
        "http://sub/",
        start_from=contract.StartFrom.EARLIEST,
        **kw,
    )


async def run_pool(
    trigger: contract.Trigger, evs: list[events.CloudEvent]
) -> tuple[SlowSender, MemoryChannel, WorkerPool]:
    channel = MemoryChannel()
    channel.name = "memory"
    sender = SlowSender()
    sender.expect = len(evs)
    pool = WorkerPool(
        {"memory": channel}, Dispatcher(sender), DispatcherSettings(commit_interval=0.01)
    )
    await channel.ensure_broker(BROKER)
    await channel.append(BROKER, [Envelope(e, 0.0) for e in evs], contract.Durability.ALL)
    await pool.apply(contract.Contract(1, (BROKER,), (trigger,)))
    await asyncio.wait_for(sender.done.wait(), 10)
    return sender, channel, pool


def ev(i: int, key: str | None = None) -> events.CloudEvent:
    attrs: dict[str, events.AttrValue] = {
        "specversion": "1.0",
        "id": str(i),
        "source": "/s",
        "type": "t",
    }
    if key is not None:
        attrs["partitionkey"] = key
    return events.CloudEvent(attrs, b"")


async def test_unordered_respects_max_in_flight() -> None:
    sender, _, pool = await run_pool(trig(max_in_flight=4), [ev(i) for i in range(60)])
    await pool.close()
    assert sender.peak == 4
    assert sorted(int(i) for _, i in sender.seen) == list(range(60))


async def test_ordered_per_key() -> None:
    evs = [ev(i, key=f"k{i % 3}") for i in range(45)]
    sender, _, pool = await run_pool(
        trig(order=contract.DeliveryOrder.ORDERED, max_in_flight=10), evs
    )
    await pool.close()
    for key in ("k0", "k1", "k2"):
        ids = [int(i) for k, i in sender.seen if k == key]
        assert ids == sorted(ids) and len(ids) == 15
    assert sender.peak > 1  # different keys still run in parallel


async def test_commits_everything_once_done() -> None:
    _sender, _channel, pool = await run_pool(trig(max_in_flight=8), [ev(i) for i in range(30)])
    await asyncio.sleep(0.1)
    worker = next(iter(pool.workers.values()))
    await worker.commit()
    assert await worker.subscription.lag() == 0
    await pool.close()


async def test_filtered_out_events_are_committed_without_delivery() -> None:
    f = (contract.FilterSpec("exact", attributes=(("id", "3"),)),)
    evs = [ev(i) for i in range(10)]
    channel = MemoryChannel()
    channel.name = "memory"
    sender = SlowSender()
    sender.expect = 1
    pool = WorkerPool(
        {"memory": channel}, Dispatcher(sender), DispatcherSettings(commit_interval=0.01)
    )
    await channel.ensure_broker(BROKER)
    await channel.append(BROKER, [Envelope(e, 0.0) for e in evs], contract.Durability.ALL)
    await pool.apply(contract.Contract(1, (BROKER,), (trig(filters=f),)))
    await asyncio.wait_for(sender.done.wait(), 5)
    await asyncio.sleep(0.3)
    worker = next(iter(pool.workers.values()))
    assert await worker.subscription.lag() == 0
    assert [i for _, i in sender.seen] == ["3"]
    await pool.close()


async def test_trigger_update_keeps_position_and_applies_new_filter() -> None:
    channel = MemoryChannel()
    channel.name = "memory"
    sender = SlowSender()
    sender.expect = 2
    pool = WorkerPool(
        {"memory": channel}, Dispatcher(sender), DispatcherSettings(commit_interval=0.01)
    )
    await channel.ensure_broker(BROKER)

    def only(i: int) -> tuple[contract.FilterSpec, ...]:
        return (contract.FilterSpec("exact", attributes=(("id", str(i)),)),)

    await pool.apply(contract.Contract(1, (BROKER,), (trig(filters=only(1)),)))
    await channel.append(BROKER, [Envelope(ev(1), 0.0)], contract.Durability.ALL)
    await asyncio.sleep(0.2)
    await pool.apply(contract.Contract(2, (BROKER,), (trig(filters=only(2)),)))
    await channel.append(
        BROKER, [Envelope(ev(1), 0.0), Envelope(ev(2), 0.0)], contract.Durability.ALL
    )
    await asyncio.wait_for(sender.done.wait(), 5)
    await pool.close()
    assert [i for _, i in sender.seen] == ["1", "2"]
