"""KafkaChannel against a real Apache Kafka (hack/kafka.py, started once per session).

    test ──append──> KafkaChannel ──librdkafka──> Kafka 4.x (KRaft, loopback)
         <─fetch───  KafkaSubscription <──────────┘     ^
    plain confluent_kafka Producer/Consumer ────────────┘  (interop: what others write and read)

The conformance suite runs with one-partition topics (it checks order across a whole log); the
Kafka-specific tests below use several partitions where that is the point.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from confluent_kafka import Consumer, Producer
from fixtures import channel_conformance as conformance
from fixtures.kafka import Cluster
from kbroker.core import contract
from kbroker.core.channel import ChannelError, ChannelUnavailable, EventTooLarge, Record
from kbroker.core.channels import _kafka_consumer, kafka
from kbroker.core.channels.kafka import KafkaChannel, KafkaSettings, KafkaSubscription, topic_of

ALL = contract.Durability.ALL
EARLIEST = contract.StartFrom.EARLIEST

# Shorter group heartbeats than the defaults: a second member is noticed in ~1 s, not ~3 s.
FAST_GROUPS = (("heartbeat.interval.ms", "500"), ("session.timeout.ms", "6000"))


def settings(bootstrap: str, **kw: object) -> KafkaSettings:
    base: dict[str, object] = {
        "bootstrap": bootstrap,
        "default_partitions": 1,
        "consumer_config": FAST_GROUPS,
    }
    return KafkaSettings(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_leaked_client_threads() -> Iterator[None]:
    """Every consumer and producer thread a test started is gone when it ends (structured
    concurrency: closing the channel or subscription owns them)."""
    yield
    deadline = time.monotonic() + 5
    while (alive := [t.name for t in threading.enumerate() if t.name.startswith("kafka-")]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert not alive, f"threads left running: {alive}"


@pytest.mark.kafka
@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
async def test_conformance(check: conformance.Check, kafka_bootstrap: str) -> None:
    await check(lambda: KafkaChannel(settings(kafka_bootstrap)))


def broker(partitions: int = 1, **config: str) -> contract.Broker:
    b = conformance.make_broker()
    pairs = {"default.topic.partitions": str(partitions), **config}
    return contract.Broker(
        namespace=b.namespace,
        name=b.name,
        uid=b.uid,
        address=b.address,
        channel="kafka",
        channel_config=tuple(sorted(pairs.items())),
    )


@pytest.fixture
async def channel(kafka_bootstrap: str) -> AsyncIterator[KafkaChannel]:
    ch = KafkaChannel(settings(kafka_bootstrap))
    await ch.start()
    yield ch
    await ch.close()


# --- pure pieces (no Kafka needed) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "want"),
    [
        ((), kafka.TopicSpec("default:9092", 10, -1, ())),
        (
            (("bootstrap.servers", "a:1,b:2"), ("default.topic.partitions", "3"),
             ("default.topic.replication.factor", "2"),
             ("default.topic.config.retention.ms", "100"), ("unrelated", "x")),
            kafka.TopicSpec("a:1,b:2", 3, 2, (("retention.ms", "100"),)),
        ),
    ],
    ids=["defaults", "knative-configmap"],
)  # fmt: skip
def test_topic_spec_from_the_broker_config(
    pairs: tuple[tuple[str, str], ...], want: kafka.TopicSpec
) -> None:
    assert kafka.TopicSpec.parse(pairs, KafkaSettings(bootstrap="default:9092")) == want


@pytest.mark.parametrize(
    ("pairs", "bootstrap"),
    [((("default.topic.partitions", "ten"),), "x:1"), ((), None)],
    ids=["not-a-number", "no-bootstrap"],
)
def test_bad_broker_config_is_a_channel_error(
    pairs: tuple[tuple[str, str], ...], bootstrap: str | None
) -> None:
    with pytest.raises(ChannelError):
        kafka.TopicSpec.parse(pairs, KafkaSettings(bootstrap=bootstrap))


def test_names_default_to_knative_s() -> None:
    b = conformance.make_broker("orders")
    t = dataclasses.replace(conformance.make_trigger(b, EARLIEST), name="audit", consumer_group="")
    assert kafka.topic_of(b) == "knative-broker-conformance-orders"
    assert kafka.group_of(t) == "knative-trigger-conformance-audit"
    assert kafka.topic_of(dataclasses.replace(b, topic="mine")) == "mine"


# --- topic and group management --------------------------------------------------------------


@pytest.mark.kafka
async def test_topic_is_created_with_the_broker_config(
    channel: KafkaChannel, kafka_bootstrap: str
) -> None:
    b = broker(3, **{"default.topic.config.retention.ms": "3600000"})
    await channel.ensure_broker(b)
    await channel.ensure_broker(b)  # idempotent
    assert topic_of(b) == f"knative-broker-conformance-{b.name}"
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    meta = await asyncio.to_thread(admin.list_topics, topic_of(b), 10)
    assert len(meta.topics[topic_of(b)].partitions) == 3
    resource = ConfigResource("topic", topic_of(b))
    configs = await asyncio.to_thread(admin.describe_configs([resource])[resource].result, 10)
    assert configs["retention.ms"].value == "3600000"
    await channel.delete_broker(b)
    meta = await asyncio.to_thread(admin.list_topics, None, 10)
    assert topic_of(b) not in meta.topics


@pytest.mark.kafka
async def test_external_topic_is_neither_created_nor_deleted(
    channel: KafkaChannel, kafka_bootstrap: str
) -> None:
    from confluent_kafka.admin import AdminClient

    b = broker()
    external = contract.Broker(
        namespace=b.namespace, name=b.name, uid=b.uid, address=b.address,
        channel="kafka", topic=f"external-{b.name}", external_topic=True,
    )  # fmt: skip
    await channel.ensure_broker(external)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    meta = await asyncio.to_thread(admin.list_topics, None, 10)
    assert external.topic not in meta.topics
    await channel.ensure_broker(dataclasses.replace(external, external_topic=False))
    await channel.delete_broker(external)
    meta = await asyncio.to_thread(admin.list_topics, None, 10)
    assert external.topic in meta.topics, "delete_broker removed an external topic"


# --- interop: records written and read by other Kafka clients ---------------------------------


Headers = list[tuple[str, bytes]]


def _produce_plain(bootstrap: str, topic: str, records: list[tuple[Headers, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for headers, value in records:
        plain: list[tuple[str, str | bytes | None]] = [(k, v) for k, v in headers]
        producer.produce(topic, value=value, headers=plain)
    assert producer.flush(10) == 0


@pytest.mark.kafka
async def test_reads_binary_and_structured_records_of_a_plain_producer(
    channel: KafkaChannel, kafka_bootstrap: str
) -> None:
    b = broker()
    await channel.ensure_broker(b)
    sub = channel.subscribe(b, conformance.make_trigger(b, EARLIEST))
    binary = (
        [("ce_specversion", b"1.0"), ("ce_id", b"bin-1"), ("ce_source", b"/plain"),
         ("ce_type", b"t.binary"), ("ce_myext", b"x"), ("content-type", b"text/plain")],
        b"hello",
    )  # fmt: skip
    structured_event = {
        "specversion": "1.0", "id": "str-1", "source": "/plain", "type": "t.structured",
        "count": 3, "datacontenttype": "application/json", "data": {"a": 1},
    }  # fmt: skip
    structured = (
        [("content-type", b"application/cloudevents+json; charset=utf-8")],
        orjson.dumps(structured_event),
    )
    before = time.time()
    await asyncio.to_thread(_produce_plain, kafka_bootstrap, topic_of(b), [binary, structured])
    got = await conformance.drain(sub, 2, timeout=10)
    first, second = (r.envelope for r in got)
    assert first.event.attributes == {
        "specversion": "1.0", "id": "bin-1", "source": "/plain", "type": "t.binary",
        "myext": "x", "datacontenttype": "text/plain",
    }  # fmt: skip
    assert first.event.data == b"hello"
    assert first.traceparent is None and abs(first.arrival - before) < 30  # record timestamp
    assert second.event.id == "str-1" and second.event.get("count") == 3
    assert orjson.loads(second.event.data or b"") == {"a": 1}
    await sub.close()


@pytest.mark.kafka
async def test_records_we_write_are_read_by_the_cloudevents_sdk(
    channel: KafkaChannel, kafka_bootstrap: str
) -> None:
    from cloudevents.core.formats.json import JSONFormat

    b = broker()
    await channel.ensure_broker(b)
    env = conformance.envelope("sdk-1", key="pk-7")
    await channel.append(b, [env], ALL)
    consumer = Consumer({
        "bootstrap.servers": kafka_bootstrap, "group.id": f"sdk-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
    })  # fmt: skip
    consumer.subscribe([topic_of(b)])
    msg = None
    deadline = time.monotonic() + 15
    while msg is None and time.monotonic() < deadline:
        msg = await asyncio.to_thread(consumer.poll, 0.5)
    await asyncio.to_thread(consumer.close)
    assert msg is not None and msg.error() is None
    assert msg.key() == b"pk-7"
    given = msg.headers() or []
    pairs = given.items() if isinstance(given, dict) else given
    headers = {k: v for k, v in pairs if isinstance(v, bytes)}
    assert headers["traceparent"] == env.traceparent.encode()  # type: ignore[union-attr]
    sdk_event = ce_kafka.from_binary(
        ce_kafka.KafkaMessage(headers=headers, key=msg.key(), value=msg.value() or b""),
        JSONFormat(),
    )
    assert sdk_event.get_id() == "sdk-1"
    assert sdk_event.get_source() == "/conformance"
    assert sdk_event.get_extension("partitionkey") == "pk-7"


# --- durability, availability -----------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.parametrize("level", list(contract.Durability), ids=lambda d: d.value)
async def test_every_durability_level_stores_the_batch(
    channel: KafkaChannel, level: contract.Durability
) -> None:
    b = broker()
    await channel.ensure_broker(b)
    sub = channel.subscribe(b, conformance.make_trigger(b, EARLIEST))
    await channel.append(b, [conformance.envelope(f"{level.value}-{i}") for i in range(50)], level)
    got = await conformance.drain(sub, 50, timeout=10)
    assert conformance.ids(got) == [f"{level.value}-{i}" for i in range(50)]
    await sub.close()


@pytest.mark.kafka
async def test_events_with_the_same_partitionkey_share_a_partition(channel: KafkaChannel) -> None:
    b = broker(4)
    await channel.ensure_broker(b)
    sub = channel.subscribe(b, conformance.make_trigger(b, EARLIEST))
    envs = [conformance.envelope(f"e{i}", key=f"k{i % 3}") for i in range(30)]
    await channel.append(b, envs, ALL)
    got = await conformance.drain(sub, 30, timeout=10)
    by_key: dict[str | None, set[int]] = {}
    for r in got:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert sorted(k or "" for k in by_key) == ["k0", "k1", "k2"]
    assert all(len(parts) == 1 for parts in by_key.values()), by_key
    for key in by_key:  # per key, the order of appending
        mine = [r.envelope.event.id for r in got if r.key == key]
        assert mine == [e.event.id for e in envs if e.event.get("partitionkey") == key]
    await sub.close()


@pytest.mark.kafka
async def test_an_event_over_the_size_limit_is_refused(channel: KafkaChannel) -> None:
    b = broker()
    await channel.ensure_broker(b)
    with pytest.raises(EventTooLarge):
        await channel.append(b, [conformance.envelope("big", size=2 * 1024 * 1024)], ALL)
    await channel.append(b, [conformance.envelope("small")], ALL)  # the producer still works


async def test_unreachable_kafka_fails_fast_and_reports_unhealthy() -> None:
    port = _closed_port()
    ch = KafkaChannel(settings(f"127.0.0.1:{port}", delivery_timeout=1.0, admin_timeout=1.0))
    await ch.start()
    b = broker()
    assert not await ch.healthy()
    for level in (contract.Durability.NONE, ALL):  # none and leader share a producer
        start = time.monotonic()
        with pytest.raises(ChannelUnavailable):
            await ch.append(b, [conformance.envelope("x")], level)
        assert time.monotonic() - start < 3.5, level
    with pytest.raises(ChannelUnavailable):
        await ch.ensure_broker(b)
    await ch.close()


async def test_a_consumer_that_cannot_start_is_retried_and_still_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = (("session.timeout.ms", "not-a-number"),)  # librdkafka refuses the consumer config
    ch = KafkaChannel(settings(f"127.0.0.1:{_closed_port()}", consumer_config=bad))
    b = broker()
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    start = time.monotonic()
    assert await sub.fetch(10, 1.5) == []
    assert 1.4 <= time.monotonic() - start < 3
    await sub.close()
    await ch.close()
    failures = [r for r in caplog.records if "starting a new one" in r.getMessage()]
    assert len(failures) >= 2, "the failed member was not retried"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return: nobody listens


@pytest.mark.kafka
async def test_broker_stopped_then_restarted(
    kafka_single: Cluster | None, kafka_bootstrap: str
) -> None:
    """Kafka down: append fails within the delivery timeout and healthy() says so; back up: the
    same channel (same producers) appends again, and the subscription resumes."""
    if kafka_single is None:
        pytest.skip("KAFKA_BOOTSTRAP points at a Kafka this test cannot stop")
    ch = KafkaChannel(settings(kafka_bootstrap, delivery_timeout=2.0, health_ttl=0.0))
    await ch.start()
    b = broker()
    await ch.ensure_broker(b)
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    await ch.append(b, [conformance.envelope("before")], ALL)
    got = await conformance.drain(sub, 1, timeout=10)
    assert conformance.ids(got) == ["before"]
    await sub.commit(got[0].partition, got[0].offset)
    await asyncio.to_thread(kafka_single.kill_node, 1)
    try:
        assert not await ch.healthy()
        for level in (ALL, contract.Durability.LEADER):
            start = time.monotonic()
            with pytest.raises(ChannelUnavailable):
                await ch.append(b, [conformance.envelope(f"down-{level.value}")], level)
            assert time.monotonic() - start < 4.5
    finally:
        await asyncio.to_thread(kafka_single.restart_node, 1)
    deadline = time.monotonic() + 30
    while not await ch.healthy():
        assert time.monotonic() < deadline, "never healthy again"
        await asyncio.sleep(0.2)
    await ch.append(b, [conformance.envelope("after")], ALL)
    ids = conformance.ids(await _fetch_until(sub, "after", 30))
    # The group rejoins at its committed offset after the restart. Whether the asynchronous
    # commit of "before" landed before the kill decides a redelivery (at least once).
    assert ids[-1] == "after" and set(ids) <= {"before", "after"}, ids
    await sub.close()
    await ch.close()


async def _fetch_until(sub: KafkaSubscription, last_id: str, timeout: float) -> list[Record]:
    out: list[Record] = []
    deadline = time.monotonic() + timeout
    while not out or out[-1].envelope.event.id != last_id:
        assert time.monotonic() < deadline, conformance.ids(out)
        out.extend(await sub.fetch(100, 1.0))
    return out


# --- consumer groups ---------------------------------------------------------------------------


@pytest.mark.kafka
async def test_two_members_of_one_group_share_the_partitions(kafka_bootstrap: str) -> None:
    """Two processes running the same trigger (here: two channels) split the topic's partitions
    between them, each event goes to exactly one, and lag adds up across members."""
    one = KafkaChannel(settings(kafka_bootstrap))
    two = KafkaChannel(settings(kafka_bootstrap))
    b = broker(4)
    trigger = conformance.make_trigger(b, EARLIEST)
    await one.ensure_broker(b)
    first, second = one.subscribe(b, trigger), two.subscribe(b, trigger)
    envs = [conformance.envelope(f"e{i}", key=f"k{i}") for i in range(40)]
    await one.append(b, envs, ALL)
    got: dict[str, list[Record]] = {"first": [], "second": []}
    deadline = time.monotonic() + 30
    while sum(len(v) for v in got.values()) < 40 or not all(got.values()):
        assert time.monotonic() < deadline, {k: len(v) for k, v in got.items()}
        got["first"] += await first.fetch(100, 0.2)
        got["second"] += await second.fetch(100, 0.2)
    # A rebalance while reading may redeliver (nothing was committed yet): at least once.
    assert {r.envelope.event.id for v in got.values() for r in v} == {f"e{i}" for i in range(40)}
    assert await first.lag() + await second.lag() == 40
    for records in got.values():  # commit each member's last record per partition
        for p in {r.partition for r in records}:
            last = max(r.offset for r in records if r.partition == p)
            sub = first if records is got["first"] else second
            await sub.commit(p, last)
    assert await first.lag() + await second.lag() == 0
    await first.close()
    await second.close()
    await one.close()
    await two.close()


@pytest.mark.kafka
async def test_commit_resumes_per_partition_in_a_new_process(kafka_bootstrap: str) -> None:
    b = broker(3)
    trigger = conformance.make_trigger(b, EARLIEST)
    ch = KafkaChannel(settings(kafka_bootstrap))
    await ch.ensure_broker(b)
    await ch.append(b, [conformance.envelope(f"e{i}", key=f"k{i % 6}") for i in range(30)], ALL)
    sub = ch.subscribe(b, trigger)
    got = await conformance.drain(sub, 30, timeout=15)
    done: set[str] = set()
    for p in {r.partition for r in got}:  # commit the first half of every partition
        mine = [r for r in got if r.partition == p]
        half = mine[: len(mine) // 2]
        if half:
            await sub.commit(p, half[-1].offset)
            done |= {r.envelope.event.id for r in half}
    await ch.close()  # commits synchronously on the way out
    again = KafkaChannel(settings(kafka_bootstrap))
    sub = again.subscribe(b, trigger)
    rest = await conformance.drain(sub, 30 - len(done), timeout=15)
    assert {r.envelope.event.id for r in rest} == {f"e{i}" for i in range(30)} - done
    await again.close()


# --- three nodes: losing one of them ------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(300)  # three JVMs start inside it: ~15 s idle, 50 s on a loaded machine
async def test_losing_one_of_three_nodes_keeps_durable_appends_going(
    kafka_cluster3: Cluster,
) -> None:
    """Replication 3, min.insync.replicas 2: with one node killed, acks=all appends still
    succeed (after leader election) and the subscription reads everything."""
    ch = KafkaChannel(settings(kafka_cluster3.bootstrap, delivery_timeout=10.0))
    b = broker(2)
    await ch.ensure_broker(b)
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    await ch.append(b, [conformance.envelope(f"a{i}", key=str(i)) for i in range(10)], ALL)
    await asyncio.to_thread(kafka_cluster3.kill_node, 1)
    await ch.append(b, [conformance.envelope(f"b{i}", key=str(i)) for i in range(10)], ALL)
    got = await conformance.drain(sub, 20, timeout=30)
    assert {r.envelope.event.id for r in got} == {f"{c}{i}" for c in "ab" for i in range(10)}
    await asyncio.to_thread(kafka_cluster3.restart_node, 1)
    await ch.append(b, [conformance.envelope("c")], ALL)
    assert conformance.ids(await conformance.drain(sub, 1, timeout=30)) == ["c"]
    await ch.close()


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("pause_after", "stall", "paused"),
    [(5.0, 0.0, False), (0.2, 1.5, True)],
    ids=["prompt-reader-never-pauses", "stuck-reader-pauses-then-resumes"],
)
async def test_a_full_buffer_pauses_only_a_stuck_reader(
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    pause_after: float,
    stall: float,
    paused: bool,
) -> None:
    """pause() throws away what librdkafka prefetched (it is fetched again after resume()), so a
    full buffer that is being read only stops the reading; partitions pause when nobody reads for
    `pause_after`. Either way every record arrives once, in order per partition."""
    calls = {"pause": 0, "resume": 0}

    class Counting(Consumer):
        def pause(self, partitions: list[Any]) -> None:
            calls["pause"] += 1
            super().pause(partitions)

        def resume(self, partitions: list[Any]) -> None:
            calls["resume"] += 1
            super().resume(partitions)

    monkeypatch.setattr(_kafka_consumer, "Consumer", Counting)
    ch = KafkaChannel(settings(kafka_bootstrap, fetch_buffer=50, pause_after=pause_after))
    b = broker(2)
    await ch.ensure_broker(b)
    await ch.append(b, [conformance.envelope(f"e{i}", key=f"k{i % 4}") for i in range(600)], ALL)
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    got = await sub.fetch(50, 15.0)
    await asyncio.sleep(stall)
    deadline = time.monotonic() + 15
    while len(got) < 600 and time.monotonic() < deadline:
        got += await sub.fetch(50, 1.0)  # a reader that keeps up, 50 at a time
        await asyncio.sleep(0.002)
    await ch.close()
    assert sorted(r.envelope.event.id for r in got) == sorted(f"e{i}" for i in range(600))
    for p in {r.partition for r in got}:
        offsets = [r.offset for r in got if r.partition == p]
        assert offsets == sorted(offsets)
    assert (calls["pause"] > 0) is paused, calls
    assert calls["resume"] == calls["pause"], calls
