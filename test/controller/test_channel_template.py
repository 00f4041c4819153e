"""controller/channel_template through the compiler: which channel an MTChannelBasedBroker gets
from its channel template, and the status when the template names something unsupported."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kbroker.controller import compiler

BASE = "http://127.0.0.1:8080"
NATS = "nats://127.0.0.1:4222"


def _configmap(name: str, ns: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
            "data": data}  # fmt: skip


def _template(kind: str, api: str, spec: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {"apiVersion": api, "kind": kind}
    if spec:
        doc["spec"] = spec
    return yaml.safe_dump(doc)


def _broker(config: dict[str, str] | None = None, cls: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "b", "namespace": "default"}
    if cls:
        meta["annotations"] = {"eventing.knative.dev/broker.class": cls}
    doc: dict[str, Any] = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                           "metadata": meta}  # fmt: skip
    if config:
        doc["spec"] = {"config": config}
    return doc


def _compile(*docs: dict[str, Any], **env: Any) -> compiler.CompileResult:
    objs = [compiler.SourcedObject(d, "test.yaml") for d in docs]
    return compiler.compile(objs, compiler.Environment(BASE, **env))


REF = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ch", "namespace": "default"}
IMC = _template("InMemoryChannel", "messaging.knative.dev/v1")
KAFKA = _template("KafkaChannel", "messaging.knative.dev/v1beta1", {"numPartitions": 3})
JSM = _template("NatsJetStreamChannel", "messaging.knative.dev/v1alpha1")
JSM_R3 = _template(
    "NatsJetStreamChannel",
    "messaging.knative.dev/v1alpha1",
    {"stream": {"config": {"replicas": 3}}},
)

# (case, documents, environment, channel in the contract or None when not Ready, config pairs)
CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], str | None, dict[str, str]]] = [
    ("no template: process default", [_broker()], {}, "embedded", {}),
    (
        "no template under --kafka",
        [_broker()],
        {
            "default_kafka_config": (("bootstrap.servers", "k:9092"),),
            "class_channels": {"MTChannelBasedBroker": "kafka"},
        },
        "kafka",
        {"bootstrap.servers": "k:9092"},
    ),
    (
        "spec.config -> InMemoryChannel",
        [_broker(REF), _configmap("ch", "default", {"channel-template-spec": IMC})],
        {"nats_url": NATS},
        "embedded",
        {},
    ),
    (
        "spec.config -> NatsJetStreamChannel",
        [_broker(REF), _configmap("ch", "default", {"channel-template-spec": JSM})],
        {"nats_url": NATS},
        "nats",
        {},
    ),
    (
        "legacy key channelTemplateSpec, replicas from the template",
        [_broker(REF), _configmap("ch", "default", {"channelTemplateSpec": JSM_R3})],
        {"nats_url": NATS},
        "nats",
        {"replicas": "3"},
    ),
    (
        "the new key wins over the legacy one",
        [
            _broker(REF),
            _configmap("ch", "default", {"channel-template-spec": JSM, "channelTemplateSpec": IMC}),
        ],
        {"nats_url": NATS},
        "nats",
        {},
    ),
    (
        "config-br-default-channel in knative-eventing when spec.config is unset",
        [
            _broker(),
            _configmap(
                "config-br-default-channel", "knative-eventing", {"channel-template-spec": JSM}
            ),
        ],
        {"nats_url": NATS},
        "nats",
        {},
    ),
    (
        "KafkaChannel takes bootstrap.servers from --kafka",
        [_broker(REF), _configmap("ch", "default", {"channel-template-spec": KAFKA})],
        {"default_kafka_config": (("bootstrap.servers", "k:9092"),)},
        "kafka",
        {"bootstrap.servers": "k:9092"},
    ),
    (
        "KafkaChannel without --kafka: not Ready",
        [_broker(REF), _configmap("ch", "default", {"channel-template-spec": KAFKA})],
        {},
        None,
        {},
    ),
    (
        "NatsJetStreamChannel without --nats: not Ready",
        [_broker(REF), _configmap("ch", "default", {"channel-template-spec": JSM})],
        {},
        None,
        {},
    ),
    (
        "unknown kind: not Ready",
        [
            _broker(REF),
            _configmap(
                "ch",
                "default",
                {"channel-template-spec": _template("RedisChannel", "messaging.example.dev/v1")},
            ),
        ],
        {"nats_url": NATS},
        None,
        {},
    ),
    (
        "empty template: not Ready",
        [_broker(REF), _configmap("ch", "default", {"channel-template-spec": ""})],
        {"nats_url": NATS},
        None,
        {},
    ),
    (
        "a ConfigMap that is missing: process default, with a warning",
        [_broker(REF)],
        {"nats_url": NATS},
        "embedded",
        {},
    ),
    (
        "another class ignores channel templates",
        [_broker(REF, cls="Kbroker"), _configmap("ch", "default", {"channel-template-spec": JSM})],
        {"nats_url": NATS},
        "embedded",
        {},
    ),
]


@pytest.mark.parametrize(
    ("docs", "env", "channel", "config"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_channel_selection(
    docs: list[dict[str, Any]], env: dict[str, Any], channel: str | None, config: dict[str, str]
) -> None:
    r = _compile(*docs, **env)
    brokers = {b.name: b for b in r.contract.brokers}
    if channel is None:
        assert "b" not in brokers
        st = r.statuses[("Broker", "default", "b")]
        c = st.condition("TriggerChannelReady")
        assert c is not None and c.status == "False"
        return
    assert brokers["b"].channel == channel
    assert dict(brokers["b"].channel_config) == config


def test_unsupported_kind_names_the_supported_ones() -> None:
    cm = _configmap("ch", "default", {"channel-template-spec": _template("RedisChannel", "x/v1")})
    r = _compile(_broker(REF), cm, nats_url=NATS)
    c = r.statuses[("Broker", "default", "b")].condition("TriggerChannelReady")
    assert c is not None and c.reason == "ChannelTemplateFailed"
    for kind in ("InMemoryChannel", "KafkaChannel", "NatsJetStreamChannel"):
        assert kind in c.message
    assert "RedisChannel" in c.message
