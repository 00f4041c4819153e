"""How far delivery trails ingress (`WorkerPool.behind`, read by ingress/priority.py): the age of
the newest event a worker read, per broker; 0 once caught up; a replay of events older than the
worker (start-from earliest) never counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from kbroker.core import contract, events
from kbroker.core.channel import Envelope
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.settings import DispatcherSettings
from kbroker.filter.dispatch import Dispatcher
from kbroker.filter.pool import WorkerPool
from kbroker.filter.sender import Response

BROKER = contract.Broker("ns", "b", "ub", "http://unused/ns/b", channel="memory")


class GatedSender:
    """Holds every delivery until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def send(
        self, url: str, headers: Sequence[tuple[str, str]], body: bytes, timeout: float | None
    ) -> Response:
        self.calls += 1
        await self.release.wait()
        return Response(200, {}, (), b"")

    async def close(self) -> None:
        pass


def ev(i: int) -> events.CloudEvent:
    return events.CloudEvent({"specversion": "1.0", "id": str(i), "source": "/s", "type": "t"}, b"")


async def _until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_behind_is_the_age_of_the_newest_event_read() -> None:
    channel = MemoryChannel()
    channel.name = "memory"
    sender = GatedSender()
    pool = WorkerPool(
        {"memory": channel}, Dispatcher(sender), DispatcherSettings(commit_interval=0.01)
    )
    trigger = contract.Trigger(
        "ns", "t", contract.TriggerUid("t1"), "b", "http://sub/",
        start_from=contract.StartFrom.EARLIEST,
    )  # fmt: skip
    await channel.ensure_broker(BROKER)
    # a replay: events older than the worker are not "behind"
    await channel.append(BROKER, [Envelope(ev(0), time.time() - 60)], contract.Durability.ALL)
    await pool.apply(contract.Contract(1, (BROKER,), (trigger,)))
    try:
        sender.release.set()
        await _until(lambda: sender.calls >= 1)
        assert pool.behind().get("ns/b", 0.0) == 0.0
        await asyncio.sleep(0.6)
        sender.release.clear()  # the next delivery hangs: the worker stays on what it read
        # an event that arrived after the worker started, read 0.5 s after its arrival
        await channel.append(BROKER, [Envelope(ev(1), time.time() - 0.5)], contract.Durability.ALL)
        await _until(lambda: sender.calls >= 2)
        assert 0.45 < pool.behind()["ns/b"] < 2.0
        sender.release.set()  # delivered, nothing more to read: caught up
        await _until(lambda: pool.behind().get("ns/b", 0.0) == 0.0)
    finally:
        await pool.close()
