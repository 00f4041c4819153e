"""FilterService over the in-memory channel with a recording Sender: what it wires together.

An event appended after the contract is published reaches the sender through the pool and the
Dispatcher; the metric hooks see the attempt; readiness, the served generation (pinned or not)
and the scrape-time trigger state follow the contract; close() drains and closes the sender.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from kbroker.core import contract, events, metrics
from kbroker.core.channel import Envelope
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.settings import DispatcherSettings
from kbroker.filter.sender import Response
from kbroker.filter.service import FilterService

BROKER = contract.Broker("ns", "b", "ub", "http://unused/ns/b", channel="memory")
TRIGGER = contract.Trigger("ns", "t", contract.TriggerUid("ut"), "b", "http://sink/")


class RecordingSender:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.arrived = asyncio.Event()
        self.closed = False

    async def send(
        self, url: str, headers: Sequence[tuple[str, str]], body: bytes, timeout: float | None
    ) -> Response:
        self.ids.append(dict(headers)["ce-id"])
        self.arrived.set()
        return Response(200, {}, (), b"")

    async def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("pinned", [False, True])
async def test_contract_to_delivery(pinned: bool) -> None:
    channel = MemoryChannel()
    holder = ContractHolder()
    sender = RecordingSender()
    hooks = metrics.Metrics()
    service = FilterService(
        {"memory": channel},
        holder,
        DispatcherSettings(),
        hooks=hooks,
        sender=sender,
        pin_generations=pinned,
    )
    assert await service.ready("waiting") == (False, "waiting")
    assert service.generation == -1
    await holder.publish(contract.Contract(7, (BROKER,), (TRIGGER,)))
    assert await service.ready() == (True, "ok")
    assert service.generation == 7
    event = events.CloudEvent({"specversion": "1.0", "id": "e1", "source": "/s", "type": "t"})
    await channel.append(BROKER, [Envelope(event, 0.0)], contract.Durability.LEADER)
    await asyncio.wait_for(sender.arrived.wait(), 5)
    assert sender.ids == ["e1"]
    (state,) = await service.trigger_states()
    assert (state.namespace, state.name, state.broker) == ("ns", "t", "b")
    rendered = hooks.render().decode()
    assert 'kbroker_trigger_event_count_total{broker_name="b"' in rendered
    await service.close(drain_timeout=1.0)
    assert sender.closed
