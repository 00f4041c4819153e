"""KafkaChannel as an Inspector against a real Kafka: the shared checks, several partitions, and
that looking leaves no consumer group behind."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from confluent_kafka.admin import AdminClient
from fixtures import channel_conformance as conformance
from fixtures import inspect_conformance as inspect
from kbroker.core import contract
from kbroker.core.channels.kafka import KafkaChannel, KafkaSettings

pytestmark = pytest.mark.kafka


def settings(bootstrap: str) -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap, default_partitions=1)


@pytest.mark.parametrize("check", inspect.INSPECT_CHECKS, ids=inspect.check_id)
async def test_inspector(check: inspect.InspectCheck, kafka_bootstrap: str) -> None:
    await check(lambda: KafkaChannel(settings(kafka_bootstrap)))


def _groups(bootstrap: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_groups(request_timeout=10).result(15)
    return {g.group_id for g in result.valid}


async def test_partitions_and_no_trace(kafka_bootstrap: str) -> None:
    base = conformance.make_broker()
    b = contract.Broker(
        namespace=base.namespace,
        name=base.name,
        uid=base.uid,
        address=base.address,
        channel="kafka",
        channel_config=(("default.topic.partitions", "3"),),
    )
    before = await asyncio.to_thread(_groups, kafka_bootstrap)
    async with conformance.running(lambda: KafkaChannel(settings(kafka_bootstrap))) as ch:
        assert isinstance(ch, KafkaChannel)
        await ch.ensure_broker(b)
        for i in range(6):  # one at a time: arrival order is the order appended
            await ch.append(b, [conformance.envelope(f"k{i}", key=f"key-{i}")], conformance.ALL)
        recent = await ch.recent(b, 4)
        assert conformance.ids(recent) == ["k2", "k3", "k4", "k5"]
        assert len({r.partition for r in await ch.recent(b, 10)}) > 1
        tail = await ch.tail(b)
        try:
            await ch.append(b, [conformance.envelope("late", key="key-9")], conformance.ALL)
            assert await inspect.drain_tail(tail, 1) == ["late"]
        finally:
            await tail.close()
        with contextlib.suppress(Exception):
            await ch.delete_broker(b)
    after = await asyncio.to_thread(_groups, kafka_bootstrap)
    assert {g for g in after - before if g.startswith("kbroker-inspect-")} == set()
