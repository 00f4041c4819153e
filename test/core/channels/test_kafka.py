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
from collections.abc import AsyncIterator

import pytest

from core import contract
from core.channels.kafka import KafkaChannel, KafkaSettings, topic_of
from test.core.channels import channel_conformance as conformance

pytestmark = pytest.mark.kafka

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


# --- topic and group management --------------------------------------------------------------


async def test_topic_is_created_with_the_broker_config(
    channel: KafkaChannel, kafka_bootstrap: str
) -> None:
    b = broker(3, **{"default.topic.config.retention.ms": "3600000"})
    await channel.ensure_broker(b)
    await channel.ensure_broker(b)  # idempotent
    assert topic_of(b) == f"knative-broker-conformance-{b.name}"
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._config import ConfigResource

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    meta = await asyncio.to_thread(admin.list_topics, topic_of(b), 10)
    assert len(meta.topics[topic_of(b)].partitions) == 3
    resource = ConfigResource("topic", topic_of(b))
    configs = await asyncio.to_thread(admin.describe_configs([resource])[resource].result, 10)
    assert configs["retention.ms"].value == "3600000"
    await channel.delete_broker(b)
    meta = await asyncio.to_thread(admin.list_topics, None, 10)
    assert topic_of(b) not in meta.topics


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
