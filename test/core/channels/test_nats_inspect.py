"""NatsChannel as an Inspector against a real NATS JetStream: the shared checks, and that a tail
leaves no consumer on the stream once closed (a Trigger's durable one stays)."""

from __future__ import annotations

import nats as nats_py
import pytest
from fixtures import channel_conformance as conformance
from fixtures import inspect_conformance as inspect
from kbroker.core.channels.nats import NatsChannel, NatsSettings, stream_of

pytestmark = pytest.mark.nats


@pytest.mark.parametrize("check", inspect.INSPECT_CHECKS, ids=inspect.check_id)
async def test_inspector(check: inspect.InspectCheck, nats_url: str) -> None:
    await check(lambda: NatsChannel(NatsSettings(url=nats_url)))


async def _consumers(nats_url: str, stream: str) -> list[str]:
    nc = await nats_py.connect(nats_url)
    try:
        return [c.name for c in await nc.jsm().consumers_info(stream)]
    finally:
        await nc.close()


async def test_tail_leaves_no_consumer(nats_url: str) -> None:
    b = conformance.make_broker()
    async with conformance.running(lambda: NatsChannel(NatsSettings(url=nats_url))) as ch:
        assert isinstance(ch, NatsChannel)
        await ch.ensure_broker(b)
        trigger = conformance.make_trigger(b, conformance.EARLIEST)
        sub = ch.subscribe(b, trigger)  # the control: a Trigger's consumer is durable
        await sub.fetch(1, 0.2)
        tail = await ch.tail(b)
        during = await _consumers(nats_url, stream_of(b))
        await ch.append(b, [conformance.envelope("n1")], conformance.ALL)
        assert await inspect.drain_tail(tail, 1) == ["n1"]
        await tail.close()
        after = await _consumers(nats_url, stream_of(b))
        assert len(during) == 2
        assert len(after) == 1 and after[0] in during
        await ch.delete_broker(b)
