"""Four Brokers on four backends in ONE `kbroker run`, each selected the Knative way.

    emb  MTChannelBasedBroker, spec.config: ConfigMap, InMemoryChannel template       embedded
    kaf  Kafka,                spec.config: kafka-broker-config ConfigMap              Kafka
    nat  MTChannelBasedBroker, spec.config: ConfigMap, NatsJetStreamChannel template  NATS
    rab  RabbitMQBroker,       spec.config: RabbitmqBrokerConfig                       RabbitMQ

The process runs with --kafka, --nats and --rabbitmq at once, so no process default can stand in
for a Broker's own selection: each Broker must report the channel its YAML names. The same
Triggers (same filters) hang off every Broker, the same events (ids unique per Broker) go to all
four at once, and every trigger must receive exactly its own Broker's matching events: nothing
missing, nothing from a neighbour.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiormq
import nats
import pytest
from confluent_kafka import Consumer, TopicPartition
from e2e import knative_yaml as ky
from fixtures.broker import StartBroker, make_event
from fixtures.subscriber import SinkServer

pytestmark = [pytest.mark.kafka, pytest.mark.nats, pytest.mark.rabbitmq]

N = 12  # events per broker; even ids are type "a", odd ids type "b"
EXPECTED_CHANNEL = {"emb": "embedded", "kaf": "kafka", "nat": "nats", "rab": "rabbitmq"}
CLASS = "eventing.knative.dev/broker.class"


def _configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": data,
    }


def _template(api: str, kind: str) -> dict[str, str]:
    return {"channel-template-spec": f"apiVersion: {api}\nkind: {kind}\n"}


def _cm_ref(name: str) -> dict[str, str]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "namespace": "default"}


def _broker(name: str, cls: str, config: dict[str, str]) -> dict[str, Any]:
    obj = ky.broker(name, annotations={CLASS: cls})
    obj["spec"]["config"] = config
    return obj


def backends_yaml(kafka_bootstrap: str) -> str:
    rmq_api = "eventing.knative.dev/v1alpha1"
    return ky.dump(
        _configmap("emb-channel", _template("messaging.knative.dev/v1", "InMemoryChannel")),
        _broker("emb", "MTChannelBasedBroker", _cm_ref("emb-channel")),
        _configmap(
            "kafka-broker-config",
            {
                "bootstrap.servers": kafka_bootstrap,
                "default.topic.partitions": "1",
                "default.topic.replication.factor": "1",
            },
        ),
        _broker("kaf", "Kafka", _cm_ref("kafka-broker-config")),
        _configmap(
            "nat-channel", _template("messaging.knative.dev/v1alpha1", "NatsJetStreamChannel")
        ),
        _broker("nat", "MTChannelBasedBroker", _cm_ref("nat-channel")),
        {
            "apiVersion": rmq_api,
            "kind": "RabbitmqBrokerConfig",
            "metadata": {"name": "rmq", "namespace": "default"},
            "spec": {"rabbitmqClusterReference": {"name": "local"}},
        },
        _broker(
            "rab",
            "RabbitMQBroker",
            {
                "apiVersion": rmq_api,
                "kind": "RabbitmqBrokerConfig",
                "name": "rmq",
                "namespace": "default",
            },
        ),
    )


def triggers_yaml(sinks: SinkServer) -> str:
    """The same two Triggers on every Broker: everything, and only type "a"."""
    objs = []
    for b in EXPECTED_CHANNEL:
        objs.append(ky.trigger(f"{b}-all", sinks.sink(f"{b}-all").url, broker=b))
        objs.append(
            ky.trigger(f"{b}-a", sinks.sink(f"{b}-a").url, broker=b, attributes={"type": "a"})
        )
    return ky.dump(*objs)


def _kafka_count(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(high - low)
    finally:
        consumer.close()


async def _nats_count(url: str, topic: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(topic)
        return int(info.state.messages)
    finally:
        await nc.close()


async def _rabbitmq_has_exchange(url: str, topic: str) -> bool:
    conn = await aiormq.connect(url)
    try:
        channel = await conn.channel()
        try:
            await channel.exchange_declare(exchange=topic, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True
    finally:
        await conn.close()


async def test_four_brokers_four_backends_one_process(
    start_broker: StartBroker,
    sinks: SinkServer,
    kafka_bootstrap: str,
    nats_url: str,
    rabbitmq_url: str,
) -> None:
    tag = uuid.uuid4().hex[:8]  # the servers are shared by the session: names unique to this run
    proc = await start_broker(
        {"backends.yaml": backends_yaml(kafka_bootstrap), "triggers.yaml": triggers_yaml(sinks)},
        extra_args=[
            "--kafka", kafka_bootstrap, "--nats", nats_url, "--rabbitmq", rabbitmq_url,
            f"--topic-template=kb-{tag}-{{namespace}}-{{name}}",
            f"--group-template=kb-{tag}-{{namespace}}-{{name}}",
        ],
    )  # fmt: skip
    for b in EXPECTED_CHANNEL:
        await proc.wait_ready_object("Broker", b, timeout=90)
        for t in (f"{b}-all", f"{b}-a"):
            await proc.wait_ready_object("Trigger", t, timeout=90)

    brokers = {o["metadata"]["name"]: o for o in (await proc.status())["brokers"]}
    reported = {
        b: brokers[b]["status"]["annotations"].get("kbroker.dev/channel") for b in EXPECTED_CHANNEL
    }
    assert reported == EXPECTED_CHANNEL

    async def send_all(b: str) -> None:
        for i in range(N):
            ev = make_event(f"{b}-{i}", type="a" if i % 2 == 0 else "b")
            assert (await proc.send(ev, broker=b)).status_code == 202

    await asyncio.gather(*(send_all(b) for b in EXPECTED_CHANNEL))

    for b in EXPECTED_CHANNEL:
        await sinks.sinks[f"{b}-all"].wait_for(N, 60)
        await sinks.sinks[f"{b}-a"].wait_for(N // 2, 60)
    await asyncio.sleep(1.0)  # late cross-talk or duplicates would arrive by now
    for b in EXPECTED_CHANNEL:
        everything = {f"{b}-{i}" for i in range(N)}
        type_a = {f"{b}-{i}" for i in range(0, N, 2)}
        got_all, got_a = sinks.sinks[f"{b}-all"].ids(), sinks.sinks[f"{b}-a"].ids()
        assert sorted(got_all) == sorted(everything), b
        assert sorted(got_a) == sorted(type_a), b

    # The events are in the servers themselves, under this run's names (not only in our status);
    # `kb-<hex>-default-<name>` is already a valid stream and exchange name, used as it is.
    topic = {b: brokers[b]["status"]["annotations"]["default.topic"] for b in EXPECTED_CHANNEL}
    assert all(t.startswith(f"kb-{tag}-") for t in topic.values()), topic
    assert await asyncio.to_thread(_kafka_count, kafka_bootstrap, topic["kaf"]) == N
    assert await _nats_count(nats_url, topic["nat"]) == N
    assert await _rabbitmq_has_exchange(rabbitmq_url, topic["rab"])
