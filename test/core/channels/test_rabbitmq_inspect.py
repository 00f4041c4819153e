"""RabbitMQChannel as an Inspector against a real RabbitMQ: the shared checks (history is honestly
None), and that a closed tail leaves no queue behind."""

from __future__ import annotations

import aiormq
import pytest
from fixtures import channel_conformance as conformance
from fixtures import inspect_conformance as inspect
from kbroker.core.channels.rabbitmq import RabbitMQChannel, RabbitMQSettings

pytestmark = pytest.mark.rabbitmq


@pytest.mark.parametrize("check", inspect.INSPECT_CHECKS, ids=inspect.check_id)
async def test_inspector(check: inspect.InspectCheck, rabbitmq_url: str) -> None:
    await check(lambda: RabbitMQChannel(RabbitMQSettings(url=rabbitmq_url)))


async def _queue_exists(url: str, queue: str) -> bool:
    conn = await aiormq.connect(url)
    try:
        ch = await conn.channel()
        try:
            await ch.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        except aiormq.exceptions.ChannelLockedResource:
            return True  # exclusive to the tail's connection: it exists
        return True
    finally:
        await conn.close()


async def test_no_history_and_no_queue_left(rabbitmq_url: str) -> None:
    b = conformance.make_broker()
    async with conformance.running(
        lambda: RabbitMQChannel(RabbitMQSettings(url=rabbitmq_url))
    ) as ch:
        assert isinstance(ch, RabbitMQChannel)
        await ch.ensure_broker(b)
        await ch.append(b, [conformance.envelope("r0")], conformance.ALL)
        assert await ch.recent(b, 10) is None
        tail = await ch.tail(b)
        assert await _queue_exists(rabbitmq_url, tail.queue)
        await ch.append(b, [conformance.envelope("r1")], conformance.ALL)
        assert await inspect.drain_tail(tail, 1) == ["r1"]
        await tail.close()
        assert not await _queue_exists(rabbitmq_url, tail.queue)
        await ch.delete_broker(b)
