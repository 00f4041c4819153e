"""kbroker/ui_events: the console's Events port over a running process's channels and contract
(a real embedded log; the memory channel stands for a backend that cannot be inspected)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kbroker.core import contract
from kbroker.core.channel import ChannelError, ChannelUnavailable
from kbroker.core.channels.embedded import EmbeddedChannel
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.events import CloudEvent
from kbroker.core.settings import EmbeddedSettings

from kbroker.ui_events import ARRIVAL, ChannelEvents

ALL = contract.Durability.ALL


def ev(i: str) -> CloudEvent:
    return CloudEvent({"specversion": "1.0", "id": i, "source": "/s", "type": "t"})


def holder(channel: str = "embedded") -> ContractHolder:
    b = contract.Broker("ns", "b", "uid", "http://x/", channel=channel)
    return ContractHolder(contract.Contract(generation=1, brokers=(b,)))


async def test_publish_recent_and_tail(tmp_path: Path) -> None:
    channel = EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path))
    await channel.start()
    try:
        port = ChannelEvents({"embedded": channel}, holder())
        await port.publish("ns", "b", ev("1"), ALL)
        stored = await port.recent("ns", "b", 10)
        assert stored is not None and [e.event.id for e in stored] == ["1"]
        assert ARRIVAL in stored[0].event.attributes  # stamped as the ingress stamps
        tail = port.tail("ns", "b")
        await tail.opened()
        await port.publish("ns", "b", ev("2"), ALL)
        got = await asyncio.wait_for(anext(tail), 5)
        assert got.event.id == "2"
        await tail.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(tail)
        with pytest.raises(ChannelError):
            await port.recent("ns", "nope", 1)
        loop_guarded = ev("3")
        loop_guarded.attributes["knativebrokerttl"] = 0
        with pytest.raises(ValueError):
            await port.publish("ns", "b", loop_guarded, ALL)
    finally:
        await channel.close()


async def test_a_channel_without_inspection() -> None:
    port = ChannelEvents({"memory": MemoryChannel()}, holder("memory"))
    assert await port.recent("ns", "b", 5) is None
    with pytest.raises(ChannelUnavailable):
        await port.tail("ns", "b").opened()
