"""The Kafka channel: a topic per Broker, a consumer group per Trigger, over confluent-kafka.

Why it exists: in cluster mode a broker's events live in Apache Kafka, as in Knative's Kafka
broker, so other Kafka tooling can read and write the same topics. This module is the Channel API
(what the rest of kbroker imports: `KafkaChannel`, `KafkaSettings`, `KafkaSubscription`, the topic
and group names); the work is done by its private modules, the only ones that import
`confluent_kafka`, which translate its exceptions into `core.channel` errors:

    _kafka_records   Envelope <-> Kafka record (CloudEvents binary binding + kb_* headers)
    _kafka_producer  a cluster's producers: appends, delivery reports, durability -> acks
    _kafka_consumer  a trigger's consumer-group member on its own thread: fetch, commit, lag
    _kafka_admin     a cluster's admin client (topics, groups, end offsets, health), error mapping
    _kafka_inspect   the console's group-less readers: a topic's last N records, a live tail

Clients are per Kafka cluster (one per distinct `bootstrap.servers`, from each broker's
`kafka-broker-config`), created on first use. docs/kafka.md has the configuration and the
measurements.

What it refuses to do: create or delete an external topic, block the event loop on a client call,
or wait without a bound (delivery, admin and assignment waits all have timeouts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from kbroker.core import contract
from kbroker.core.channel import ChannelError, Envelope, Record
from kbroker.core.channels import _kafka_inspect as kafka_inspect
from kbroker.core.channels._kafka_admin import Admin
from kbroker.core.channels._kafka_consumer import KafkaSubscription, consumer_config
from kbroker.core.channels._kafka_producer import Producers
from kbroker.core.settings import KafkaSettings

__all__ = [
    "KafkaChannel",
    "KafkaSettings",
    "KafkaSubscription",
    "TopicSpec",
    "group_of",
    "topic_of",
]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A broker's `kafka-broker-config` ConfigMap, parsed (channel_config pairs)."""

    bootstrap: str
    partitions: int
    replication: int
    config: tuple[tuple[str, str], ...]  # default.topic.config.<k> -> topic config <k>

    @staticmethod
    def parse(pairs: Sequence[tuple[str, str]], settings: KafkaSettings) -> TopicSpec:
        conf = dict(pairs)
        bootstrap = conf.get("bootstrap.servers") or settings.bootstrap
        if not bootstrap:
            raise ChannelError("kafka channel: no bootstrap.servers in the broker config")
        try:
            partitions = int(conf.get("default.topic.partitions", settings.default_partitions))
            replication = int(
                conf.get("default.topic.replication.factor", settings.default_replication)
            )
        except ValueError as e:
            raise ChannelError(f"kafka channel: bad broker config: {e}") from None
        prefix = "default.topic.config."
        topic_conf = tuple((k[len(prefix) :], v) for k, v in conf.items() if k.startswith(prefix))
        return TopicSpec(bootstrap, partitions, replication, topic_conf)


def topic_of(broker: contract.Broker) -> str:
    return broker.topic or f"knative-broker-{broker.namespace}-{broker.name}"


def group_of(trigger: contract.Trigger) -> str:
    return trigger.consumer_group or f"knative-trigger-{trigger.namespace}-{trigger.name}"


class _Cluster:
    """Clients of one Kafka cluster: its admin client and its producers."""

    def __init__(self, bootstrap: str, settings: KafkaSettings) -> None:
        self.bootstrap = bootstrap
        self.admin = Admin(bootstrap, settings)
        self.producers = Producers(bootstrap, settings)


class KafkaChannel:
    """The Channel Protocol over one or more Kafka clusters (chosen per broker's config)."""

    name = "kafka"

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._clusters: dict[str, _Cluster] = {}
        self._subs: set[KafkaSubscription] = set()
        self._groups: dict[str, set[str]] = {}  # topic -> consumer groups subscribed through us
        # A broker's channel config -> its cluster and topic spec: parsed once, not per append.
        self._specs: dict[tuple[tuple[str, str], ...], tuple[_Cluster, TopicSpec]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()  # clients are created lazily, per cluster

    async def close(self) -> None:
        # Together: each may wait (bounded) for a first assignment, and those waits overlap.
        await asyncio.gather(*(sub.close() for sub in list(self._subs)))
        clusters = list(self._clusters.values())
        self._clusters.clear()
        self._specs.clear()
        for c in clusters:
            await asyncio.to_thread(c.producers.close)

    def _cluster(self, broker: contract.Broker) -> tuple[_Cluster, TopicSpec]:
        found = self._specs.get(broker.channel_config)
        if found is not None:
            return found
        spec = TopicSpec.parse(broker.channel_config, self._settings)
        cluster = self._clusters.get(spec.bootstrap)
        if cluster is None:
            cluster = self._clusters[spec.bootstrap] = _Cluster(spec.bootstrap, self._settings)
        if len(self._specs) < 10_000:  # configs come from the contract: a small, stable set
            self._specs[broker.channel_config] = (cluster, spec)
        return cluster, spec

    async def ensure_broker(self, broker: contract.Broker) -> None:
        if broker.external_topic:
            return
        cluster, spec = self._cluster(broker)
        await cluster.admin.create_topic(
            topic_of(broker), spec.partitions, spec.replication, dict(spec.config)
        )

    async def delete_broker(self, broker: contract.Broker) -> None:
        cluster, _ = self._cluster(broker)
        topic = topic_of(broker)
        await asyncio.gather(*(s.close() for s in list(self._subs) if s.topic == topic))
        for group in self._groups.pop(topic, set()):
            await cluster.admin.delete_group(group)
        if broker.external_topic:
            return
        await cluster.admin.delete_topic(topic)

    async def append(
        self,
        broker: contract.Broker,
        envelopes: Sequence[Envelope],
        durability: contract.Durability,
    ) -> None:
        if not envelopes:
            return
        cluster, _ = self._cluster(broker)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        await cluster.producers.append(topic_of(broker), envelopes, durability, loop)

    def subscribe(self, broker: contract.Broker, trigger: contract.Trigger) -> KafkaSubscription:
        cluster, _ = self._cluster(broker)
        topic, group = topic_of(broker), group_of(trigger)
        sub = KafkaSubscription(
            consumer_config(cluster.bootstrap, group, trigger.start_from, self._settings),
            topic, trigger.start_from, self._settings, cluster.admin.high_watermarks,
            self._subs.discard,
        )  # fmt: skip
        self._subs.add(sub)
        self._groups.setdefault(topic, set()).add(group)
        return sub

    async def delete_subscription(self, broker: contract.Broker, trigger: contract.Trigger) -> None:
        cluster, _ = self._cluster(broker)
        group = group_of(trigger)
        for sub in [s for s in self._subs if s.group == group]:
            await sub.close()
        self._groups.get(topic_of(broker), set()).discard(group)
        await cluster.admin.delete_group(group)

    async def recent(self, broker: contract.Broker, limit: int) -> list[Record]:
        """Inspector: the last `limit` events, read without a consumer group."""
        cluster, _ = self._cluster(broker)
        if limit <= 0:
            return []
        return await asyncio.to_thread(
            kafka_inspect.read_recent, cluster.bootstrap, self._settings, topic_of(broker), limit
        )

    async def tail(self, broker: contract.Broker) -> kafka_inspect.KafkaTail:
        """Inspector: a group-less reader assigned at each partition's end."""
        cluster, _ = self._cluster(broker)
        return await kafka_inspect.KafkaTail.open(
            cluster.bootstrap, self._settings, topic_of(broker)
        )

    async def healthy(self) -> bool:
        if not self._clusters:
            if not self._settings.bootstrap:
                return True  # no Kafka configured, none in use
            self._clusters[self._settings.bootstrap] = _Cluster(
                self._settings.bootstrap, self._settings
            )
        results = [await c.admin.healthy() for c in list(self._clusters.values())]
        return all(results)
