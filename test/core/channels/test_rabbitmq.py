"""RabbitMQChannel against a real RabbitMQ node (hack/rabbitmq.py, started once per session).

    test ──append──> RabbitMQChannel ──aiormq──> exchange knative-broker-* ──> queue per trigger
         <─fetch───  RabbitSubscription <───────────────────────────────────────┘
    plain aiormq publisher/consumer ──────────────┘  (interop: what other AMQP clients see)

The conformance checks that need a replay of events stored before a trigger subscribed cannot hold
for a queue (it holds only what arrived after it was declared); they are skipped with that reason,
and RabbitMQ's own versions of resume and delete run below instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiormq
import pytest
from aiormq import spec
from fixtures import channel_conformance as conformance
from fixtures.rabbitmq import Cluster, Node
from kbroker.core import contract
from kbroker.core.channel import ChannelUnavailable
from kbroker.core.channels import _rabbitmq_records as records
from kbroker.core.channels.rabbitmq import (
    RabbitMQChannel,
    RabbitMQSettings,
    exchange_of,
    queue_of,
)

pytestmark = pytest.mark.rabbitmq

ALL = contract.Durability.ALL
EARLIEST = contract.StartFrom.EARLIEST
LATEST = contract.StartFrom.LATEST

NO_REPLAY = "a RabbitMQ queue holds only what arrived after the trigger's queue was declared"
UNSUPPORTED = {
    "latest_vs_earliest": NO_REPLAY,
    "commit_resume_after_reopen": NO_REPLAY + " (see test_resume_after_reopen)",
    "delete_subscription": "deleting a trigger deletes its queue and what it held",
    "delete_broker": NO_REPLAY + " (see test_delete_broker_drops_queues)",
}


def conformance_params() -> list[object]:
    return [
        pytest.param(
            c,
            id=conformance.check_id(c),
            marks=[pytest.mark.skip(UNSUPPORTED[conformance.check_id(c)])]
            if conformance.check_id(c) in UNSUPPORTED
            else [],
        )
        for c in conformance.CHECKS
    ]


@pytest.mark.parametrize("check", conformance_params())
async def test_conformance(check: conformance.Check, rabbitmq_url: str) -> None:
    await check(lambda: RabbitMQChannel(RabbitMQSettings(url=rabbitmq_url)))


@pytest.fixture
async def channel(rabbitmq_url: str) -> AsyncIterator[RabbitMQChannel]:
    ch = RabbitMQChannel(RabbitMQSettings(url=rabbitmq_url))
    await ch.start()
    yield ch
    await ch.close()


async def test_resume_after_reopen(rabbitmq_url: str) -> None:
    """Unacked records come again in a new process; acked ones never do; commits never go back."""
    b = conformance.make_broker()
    t = conformance.make_trigger(b, EARLIEST)
    factory = lambda: RabbitMQChannel(RabbitMQSettings(url=rabbitmq_url))  # noqa: E731
    async with conformance.running(factory) as ch:
        await ch.ensure_broker(b)
        sub = ch.subscribe(b, t)
        await ch.append(b, [conformance.envelope(f"e{i}") for i in range(5)], ALL)
        got = await conformance.drain(sub, 5)
        await sub.commit(got[2].partition, got[2].offset)
        await sub.commit(got[0].partition, got[0].offset)  # backwards: ignored
        await sub.close()
    async with conformance.running(factory) as ch:
        sub = ch.subscribe(b, t)
        assert conformance.ids(await conformance.drain(sub, 2)) == ["e3", "e4"]
        await ch.delete_broker(b)


async def test_delete_broker_drops_queues(channel: RabbitMQChannel, rabbitmq_url: str) -> None:
    b = conformance.make_broker()
    t = conformance.make_trigger(b, LATEST)
    await channel.ensure_broker(b)
    sub = channel.subscribe(b, t)
    await channel.append(b, [conformance.envelope("x")], ALL)
    await conformance.drain(sub, 1)
    await channel.delete_broker(b)
    conn = await aiormq.connect(rabbitmq_url)
    try:
        for kind, name in (("queue", queue_of(t)), ("exchange", exchange_of(b))):
            ch = await conn.channel()
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                if kind == "queue":
                    await ch.queue_declare(name, passive=True)
                else:
                    await ch.exchange_declare(name, passive=True)
    finally:
        await conn.close()


async def test_queue_type_and_durability_on_the_server(
    channel: RabbitMQChannel, rabbitmq_url: str
) -> None:
    """Quorum by default, classic when the broker's config says so; `all` publishes persistent
    messages, `leader` and `none` transient ones; one producer's order holds across levels."""
    for queue_type in ("quorum", "classic"):
        base = conformance.make_broker()
        b = contract.Broker(
            namespace=base.namespace, name=base.name, uid=base.uid, address=base.address,
            channel="rabbitmq", channel_config=(("queueType", queue_type),),
        )  # fmt: skip
        t = conformance.make_trigger(b, LATEST)
        await channel.ensure_broker(b)
        sub = channel.subscribe(b, t)
        await sub.ready
        conn = await aiormq.connect(rabbitmq_url)
        try:
            ch = await conn.channel()
            other = "quorum" if queue_type == "classic" else "classic"
            # Declaring the same queue with the other type is refused: proves the type it has.
            with pytest.raises(aiormq.exceptions.AMQPChannelError):
                await ch.queue_declare(queue_of(t), durable=True, arguments={"x-queue-type": other})
            ch = await conn.channel()
            spy = (await ch.queue_declare("", exclusive=True)).queue or ""
            await ch.queue_bind(spy, exchange_of(b))
            for level in contract.Durability:
                await channel.append(b, [conformance.envelope(level.value)], level)
            got = await conformance.drain(sub, 3)
            assert conformance.ids(got) == [lv.value for lv in contract.Durability]
            modes = {}
            for _ in contract.Durability:
                m = await ch.basic_get(spy, no_ack=True)
                modes[m.header.properties.message_id] = m.header.properties.delivery_mode
            assert modes == {"none": 1, "leader": 1, "all": 2}
        finally:
            await conn.close()
        await channel.delete_broker(b)


async def test_plain_client_interop(channel: RabbitMQChannel, rabbitmq_url: str) -> None:
    """A plain AMQP client's binary, structured and eventing-rabbitmq-style messages are read as
    CloudEvents; what kbroker writes, a plain consumer reads with `cloudEvents_` headers."""
    b = conformance.make_broker()
    t = conformance.make_trigger(b, LATEST)
    await channel.ensure_broker(b)
    sub = channel.subscribe(b, t)
    await sub.ready
    # A plain consumer's own queue on the same exchange.
    conn = await aiormq.connect(rabbitmq_url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        mine = (await ch.queue_declare("", exclusive=True)).queue or ""
        await ch.queue_bind(mine, exchange_of(b))
        ex = exchange_of(b)
        await ch.basic_publish(
            b'{"a":1}', exchange=ex,
            properties=spec.Basic.Properties(content_type="application/json", headers={
                "cloudEvents_specversion": "1.0", "cloudEvents_id": "bin-1",
                "cloudEvents_source": "/plain", "cloudEvents_type": "t",
                "cloudEvents_count": 3, "cloudEvents:flag": True,
            }),
        )  # fmt: skip
        await ch.basic_publish(
            b'{"specversion":"1.0","id":"str-1","source":"/plain","type":"t","data":{"b":2}}',
            exchange=ex,
            properties=spec.Basic.Properties(content_type="application/cloudevents+json"),
        )
        await ch.basic_publish(
            b"hi", exchange=ex,
            properties=spec.Basic.Properties(content_type="text/plain", headers={
                "specversion": "1.0", "id": "erm-1", "source": "/erm", "type": "t",
                "x-knative-trigger": "ignored", "myext": "v",
            }),
        )  # fmt: skip
        await ch.basic_publish(b"junk", exchange=ex)  # no event at all: skipped, not stuck
        await channel.append(b, [conformance.envelope("kb-1", key="k")], ALL)
        got = await conformance.drain(sub, 4)
        assert conformance.ids(got) == ["bin-1", "str-1", "erm-1", "kb-1"]
        first = got[0].envelope.event
        assert first.attributes["count"] == 3 and first.attributes["flag"] is True
        assert first.attributes["datacontenttype"] == "application/json"
        assert first.data == b'{"a":1}'
        assert got[2].envelope.event.attributes["myext"] == "v"
        assert "x-knative-trigger" not in got[2].envelope.event.attributes
        assert got[3].key == "k"
        await sub.commit(got[-1].partition, got[-1].offset)
        # The plain consumer: 5 messages; kbroker's is a binary-mode CloudEvent.
        bodies: list[aiormq.abc.DeliveredMessage] = []
        deadline = time.monotonic() + 5
        while len(bodies) < 5 and time.monotonic() < deadline:
            m = await ch.basic_get(mine, no_ack=True)
            if m.body is not None and m.delivery_tag is not None:
                bodies.append(m)
            else:
                await asyncio.sleep(0.05)
        kb = bodies[-1]
        headers = kb.header.properties.headers or {}
        assert headers["cloudEvents_id"] == "kb-1"
        assert headers["cloudEvents_specversion"] == "1.0"
        assert headers["cloudEvents_count"] == 7 and headers["cloudEvents_flag"] is True
        assert headers["cloudEvents_partitionkey"] == "k"
        assert kb.header.properties.message_id == "kb-1"
        assert kb.header.properties.delivery_mode == 2
    finally:
        await conn.close()
    await channel.delete_broker(b)


def test_records_roundtrip_without_a_server() -> None:
    env = conformance.envelope("r-1", key="p")
    m = records.encode(env)
    back = records.decode(m.headers, m.content_type, m.body)
    assert back.event.attributes == env.event.attributes
    assert back.event.data == env.event.data
    assert (back.traceparent, back.tracestate, back.arrival) == (
        env.traceparent,
        env.tracestate,
        env.arrival,
    )


@pytest.mark.slow
async def test_server_down_is_503_fast_and_recovers(
    rabbitmq_node: Node | None, rabbitmq_url: str
) -> None:
    """kill -9 the node: an append fails as ChannelUnavailable within 5 s, health says so; after a
    restart the same channel appends and its subscription reads again, with nothing acked lost."""
    if rabbitmq_node is None:
        pytest.skip("RABBITMQ_URL names a server this session did not start")
    ch = RabbitMQChannel(RabbitMQSettings(url=rabbitmq_url))
    await ch.start()
    try:
        b = conformance.make_broker()
        t = conformance.make_trigger(b, LATEST)
        await ch.ensure_broker(b)
        sub = ch.subscribe(b, t)
        await sub.ready
        await ch.append(b, [conformance.envelope("before")], ALL)
        # RabbitMQ 3.10 (Debian 12) can bring a quorum queue killed within seconds of its
        # creation back leaderless (no election in its log yet); one that lived ~10 s recovers.
        await asyncio.sleep(10)
        await asyncio.to_thread(rabbitmq_node.kill)
        start = time.monotonic()
        with pytest.raises(ChannelUnavailable):
            for _ in range(3):  # the first may still find the socket half-open
                await ch.append(b, [conformance.envelope("down")], ALL)
        assert time.monotonic() - start < 5.0
        assert not await ch.healthy()
        await asyncio.to_thread(rabbitmq_node.restart)
        deadline = time.monotonic() + 20
        while not await ch.healthy():
            assert time.monotonic() < deadline, "did not reconnect"
            await asyncio.sleep(0.2)
        # The restarted node recovers its queues (a quorum queue elects its leader) before it
        # confirms again: appends answer 503 until then, never a 202 that does not hold.
        while True:
            try:
                await ch.append(b, [conformance.envelope("after")], ALL)
                break
            except ChannelUnavailable:
                assert time.monotonic() < deadline, "appends did not recover"
        got: list[str] = []
        deadline = time.monotonic() + 20
        while "after" not in got and time.monotonic() < deadline:
            try:
                got += conformance.ids(await sub.fetch(10, 0.5))
            except ChannelUnavailable:
                await asyncio.sleep(0.2)
        # Persistent messages on a durable quorum queue survive the kill -9.
        assert got == ["before", "after"], got
        await ch.delete_broker(b)
    finally:
        await ch.close()


@pytest.mark.parametrize(
    ("topic", "want"),
    [
        ("knative-broker-ns-b", "knative-broker-ns-b"),
        ("kb ns/b:é", "kb_ns_b__"),
        ("amq.reserved", "_amq.reserved"),
    ],
)
def test_exchange_names_are_safe(topic: str, want: str) -> None:
    b = conformance.make_broker()
    b = contract.Broker(b.namespace, b.name, b.uid, b.address, topic=topic)
    assert exchange_of(b) == want


def test_long_names_stay_distinct_and_short() -> None:
    names = {
        exchange_of(contract.Broker("n", "b", "u", "a", topic="x" * 300 + suffix))
        for suffix in ("1", "2")
    }
    assert len(names) == 2 and all(len(n) <= 255 for n in names)


@pytest.mark.slow
async def test_quorum_queue_on_three_nodes_survives_a_killed_member(
    rabbitmq_cluster3: Cluster,
) -> None:
    """A three-node cluster: the quorum queue has a member on each node; kill -9 one node (not
    the one kbroker talks to) under appends at `all`: every append is still confirmed by the
    majority left, and every event is delivered after the node is back."""
    url = rabbitmq_cluster3.urls[0]
    ch = RabbitMQChannel(RabbitMQSettings(url=url))
    await ch.start()
    try:
        b = conformance.make_broker()
        await ch.ensure_broker(b)
        sub = ch.subscribe(b, conformance.make_trigger(b, LATEST))
        await sub.ready
        await asyncio.sleep(10)  # past the young-quorum-queue window (docs/channels.md)
        sent = [f"e{i}" for i in range(60)]
        for i, ev in enumerate(sent):
            if i == 20:
                await asyncio.to_thread(rabbitmq_cluster3.nodes[2].kill)
            if i == 40:
                await asyncio.to_thread(rabbitmq_cluster3.nodes[2].restart)
            await ch.append(b, [conformance.envelope(ev)], ALL)
        got = await conformance.drain(sub, len(sent), timeout=20.0)
        assert conformance.ids(got) == sent
        await ch.delete_broker(b)
    finally:
        await ch.close()
