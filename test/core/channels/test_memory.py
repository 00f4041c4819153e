"""MemoryChannel against the Channel conformance suite, plus what only the fake promises."""

from __future__ import annotations

import asyncio

import pytest
from fixtures import channel_conformance as conformance
from kbroker.core import contract
from kbroker.core.channels.memory import MemoryChannel, MemoryStore


@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
async def test_conformance(check: conformance.Check) -> None:
    store = MemoryStore()  # shared by every channel the check opens: a "restart" keeps the log
    await check(lambda: MemoryChannel(store))


async def test_every_durability_is_immediate_and_partition_is_zero() -> None:
    ch = MemoryChannel()
    b = conformance.make_broker()
    sub = ch.subscribe(b, conformance.make_trigger(b, conformance.EARLIEST))
    for level in contract.Durability:
        await ch.append(b, [conformance.envelope(level.value)], level)
    got = await sub.fetch(10, 0)
    assert conformance.ids(got) == [d.value for d in contract.Durability]
    assert {r.partition for r in got} == {0}
    with pytest.raises(ValueError):
        await sub.commit(1, got[0].offset)


async def test_close_wakes_a_waiting_fetch() -> None:
    ch = MemoryChannel()
    b = conformance.make_broker()
    sub = ch.subscribe(b, conformance.make_trigger(b, conformance.LATEST))
    waiting = asyncio.ensure_future(sub.fetch(10, 30.0))
    await asyncio.sleep(0.01)
    await sub.close()
    await ch.close()
    assert await asyncio.wait_for(waiting, 1.0) == []
