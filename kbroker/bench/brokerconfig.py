"""The Knative YAML a benchmark run gives `kbroker run`: one Broker and its Triggers.

Why generated: each scenario's shape (trigger count, matching fraction, failing subscriber,
dead-letter sinks) is encoded in its name, and the config folder is derived from it so the run
is reproducible from the command line alone. Triggers filter on `type` plus the `benchgroup`
extension, so trigger i gets exactly the events with `benchseq % groups == i % groups`.

The channel is chosen the Knative way, in the YAML, never by a flag of `kbroker run` alone:
NATS JetStream by an `MTChannelBasedBroker` whose `spec.config` ConfigMap holds a
NatsJetStreamChannel template, RabbitMQ by a `RabbitMQBroker` whose `spec.config` names a
RabbitmqBrokerConfig; Kafka and the embedded log by the process default (`--kafka` or not).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kbroker.bench import payload
from kbroker.bench.receiver import TriggerSpec

NAMESPACE = "bench"
BROKER = "bench"


@dataclass(frozen=True, slots=True)
class Delivery:
    retry: int = 3
    backoff_policy: str = "exponential"
    backoff_delay: str = "PT0.05S"
    dead_letter: bool = True

    def to_yaml(self, sink: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "retry": self.retry,
            "backoffPolicy": self.backoff_policy,
            "backoffDelay": self.backoff_delay,
        }
        if self.dead_letter:
            spec["deadLetterSink"] = {"uri": sink}
        return spec


def broker_doc(broker_class: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": BROKER, "namespace": NAMESPACE}
    if broker_class:
        meta["annotations"] = {"eventing.knative.dev/broker.class": broker_class}
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": meta, "spec": {}}


CHANNELS = ("embedded", "kafka", "nats", "rabbitmq")
_CHANNEL_CONFIG = "bench-channel"  # the ConfigMap / RabbitmqBrokerConfig the Broker names


def broker_docs(channel: str = "embedded", broker_class: str | None = None) -> list[dict[str, Any]]:
    """The Broker (and the config object selecting its channel) for `channel`."""
    ref = {"name": _CHANNEL_CONFIG, "namespace": NAMESPACE}
    if channel == "nats":
        template = "apiVersion: messaging.knative.dev/v1alpha1\nkind: NatsJetStreamChannel\n"
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": dict(ref),
            "data": {"channel-template-spec": template},
        }
        broker = broker_doc(broker_class or "MTChannelBasedBroker")
        broker["spec"]["config"] = {"apiVersion": "v1", "kind": "ConfigMap", **ref}
        return [configmap, broker]
    if channel == "rabbitmq":
        api = "eventing.knative.dev/v1alpha1"
        config = {
            "apiVersion": api,
            "kind": "RabbitmqBrokerConfig",
            "metadata": dict(ref),
            # Any cluster name means the server `kbroker run --rabbitmq URL` was given.
            "spec": {"rabbitmqClusterReference": {"name": "bench"}},
        }
        broker = broker_doc(broker_class or "RabbitMQBroker")
        broker["spec"]["config"] = {"apiVersion": api, "kind": "RabbitmqBrokerConfig", **ref}
        return [config, broker]
    return [broker_doc(broker_class)]


def trigger_doc(spec: TriggerSpec, receiver: str, delivery: Delivery | None) -> dict[str, Any]:
    attributes = {"type": payload.CE_TYPE}
    if spec.groups > 1:
        attributes["benchgroup"] = str(spec.residue)
    doc: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": spec.name, "namespace": NAMESPACE},
        "spec": {
            "broker": BROKER,
            "filter": {"attributes": attributes},
            "subscriber": {"uri": f"{receiver}/t/{spec.name}"},
        },
    }
    if delivery is not None:
        doc["spec"]["delivery"] = delivery.to_yaml(f"{receiver}/dls/{spec.name}")
    return doc


def write(
    folder: Path,
    triggers: list[TriggerSpec],
    receiver: str,
    delivery: Delivery | None = None,
    broker_class: str | None = None,
    prefix: str = "",
    channel: str = "embedded",
) -> list[Path]:
    """<prefix>broker.yaml and <prefix>triggers.yaml (multi-document) in `folder`; their paths.

    The prefix lets the benchmark add its objects to a folder a running broker already watches
    (`--url` with `--broker-config`) and remove exactly those afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    broker = folder / f"{prefix}broker.yaml"
    broker.write_text(yaml.safe_dump_all(broker_docs(channel, broker_class), sort_keys=False))
    return [broker, write_triggers(folder, triggers, receiver, delivery, prefix)]


def write_triggers(
    folder: Path,
    triggers: list[TriggerSpec],
    receiver: str,
    delivery: Delivery | None = None,
    prefix: str = "",
) -> Path:
    docs = [trigger_doc(t, receiver, delivery) for t in triggers]
    target = folder / f"{prefix}triggers.yaml"
    tmp = folder / f".{prefix}triggers.yaml.tmp"  # written aside, renamed: never seen half-written
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    tmp.replace(target)
    return target


def ingress_url(base: str) -> str:
    return f"{base.rstrip('/')}/{NAMESPACE}/{BROKER}"
