"""controller/retirement: a removed Broker's events and a Trigger's position outlive a grace.

    contract N --retire(previous, current)--> Retirement --(after grace)--> MemoryChannel.delete_*
    WorkerPool --forget(channel, broker, trigger)--^

MemoryChannel keeps the Protocol's positions and lag, which is all deletion depends on.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from kbroker.controller.retirement import Retirement
from kbroker.core import contract, events
from kbroker.core.channel import Envelope
from kbroker.core.channels.memory import MemoryChannel

GRACE = 0.05
BROKER = contract.Broker("default", "default", "u1", "http://x/default/default", channel="memory")
TRIGGER = contract.Trigger(
    "default", "t", contract.TriggerUid("t1"), "default", "http://127.0.0.1:1/t"
)
WITH = contract.Contract(1, (BROKER,), (TRIGGER,))
WITHOUT = contract.Contract(2)


def event(i: int) -> Envelope:
    return Envelope(
        events.CloudEvent({"specversion": "1.0", "id": str(i), "source": "/s", "type": "t"}, b""),
        0.0,
    )


async def setup(
    grace: float, stored: int = 5, consumed: int = 2
) -> tuple[MemoryChannel, Retirement]:
    channel = MemoryChannel()
    await channel.ensure_broker(BROKER)
    sub = channel.subscribe(BROKER, TRIGGER)
    await channel.append(BROKER, [event(i) for i in range(stored)], contract.Durability.ALL)
    if consumed:
        await sub.commit(0, consumed)
    return channel, Retirement({"memory": channel}, grace)


async def remove(channel: MemoryChannel, r: Retirement) -> None:
    """What the wiring does when both objects leave: the pool forgets, then retire runs."""
    await r.forget(channel, BROKER, TRIGGER)
    await r.retire(WITH, WITHOUT)


async def test_a_removed_broker_goes_after_the_grace_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kbroker.controller.retirement")
    channel, r = await setup(GRACE)
    await remove(channel, r)
    assert BROKER.key in channel.store.logs and r.pending == (BROKER.key,)
    await asyncio.sleep(GRACE * 4)
    assert BROKER.key not in channel.store.logs and not channel.store.positions
    assert not r.pending
    (warning,) = [m for m in caplog.records if m.levelno == logging.WARNING]
    assert "broker default/default" in warning.getMessage()
    assert "3 unconsumed events dropped" in warning.getMessage()


async def test_fully_consumed_broker_goes_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kbroker.controller.retirement")
    channel, r = await setup(GRACE, stored=4, consumed=4)
    await remove(channel, r)
    await asyncio.sleep(GRACE * 4)
    assert BROKER.key not in channel.store.logs
    assert not [m for m in caplog.records if m.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("back", "kept"),
    [
        (WITH, True),  # broker and trigger back
        (contract.Contract(3, (BROKER,)), True),  # broker back; the trigger's forget still runs
    ],
    ids=["both-back", "broker-back"],
)
async def test_back_within_the_grace_keeps_the_events(back: contract.Contract, kept: bool) -> None:
    channel, r = await setup(GRACE * 4)
    await remove(channel, r)
    await asyncio.sleep(GRACE)
    await r.retire(WITHOUT, back)
    await asyncio.sleep(GRACE * 8)
    assert BROKER.key in channel.store.logs
    assert len(channel.store.logs[BROKER.key].records) == 5
    position = channel.store.positions.get((BROKER.key, TRIGGER.uid))
    if back.triggers:
        assert position == 2  # resumes where it stopped
    else:
        assert position is None  # a trigger that stayed away is forgotten after the grace


async def test_a_trigger_back_on_a_broker_that_is_not_keeps_its_forget_pending() -> None:
    channel, r = await setup(GRACE)
    await remove(channel, r)
    await r.retire(WITHOUT, contract.Contract(3, (), (TRIGGER,)))
    await asyncio.sleep(GRACE * 4)
    assert BROKER.key not in channel.store.logs and not channel.store.positions


async def test_zero_grace_deletes_at_once() -> None:
    channel, r = await setup(0.0)
    await remove(channel, r)
    assert BROKER.key not in channel.store.logs and not channel.store.positions


async def test_close_leaves_pending_storage_in_place() -> None:
    channel, r = await setup(GRACE)
    await remove(channel, r)
    await r.close()
    await asyncio.sleep(GRACE * 3)
    assert BROKER.key in channel.store.logs
    assert channel.store.positions[(BROKER.key, TRIGGER.uid)] == 2
