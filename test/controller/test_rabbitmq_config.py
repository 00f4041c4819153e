"""RabbitMQBroker selection: class -> rabbitmq channel, `spec.config` -> URL and queue type, and the
Trigger parallelism annotation, through the whole compiler (eventing-rabbitmq's rules)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kbroker.controller import compiler
from kbroker.core import contract

BASE = "http://127.0.0.1:8080"
URL = "amqp://guest:guest@127.0.0.1:5672/"
CONFIG_REF = {
    "apiVersion": "eventing.knative.dev/v1alpha1",
    "kind": "RabbitmqBrokerConfig",
    "name": "rmq",
    "namespace": "default",
}


def compile_(docs: list[dict[str, Any]], url: str = URL) -> compiler.CompileResult:
    objs = [compiler.SourcedObject(d, "test.yaml") for d in docs]
    return compiler.compile(objs, compiler.Environment(BASE, default_rabbitmq_url=url))


def broker(config: Any = CONFIG_REF) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {
            "name": "b",
            "namespace": "default",
            "annotations": {"eventing.knative.dev/broker.class": "RabbitMQBroker"},
        },
        "spec": {},
    }
    if config is not None:
        doc["spec"]["config"] = config
    return doc


def rmq_config(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "RabbitmqBrokerConfig",
        "metadata": {"name": "rmq", "namespace": "default"},
        "spec": spec,
    }


SECRET_CM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "conn", "namespace": "default"},
    "data": {"uri": "amqp://h:5673/", "username": "u", "password": "p@ss"},
}

CASES = [
    # (id, documents, default URL, expected channel_config or the error it must report)
    ("cluster name -> --rabbitmq URL, quorum default",
     [broker(), rmq_config({"rabbitmqClusterReference": {"name": "c"}})], URL,
     {"url": URL, "queueType": "quorum"}),
    ("classic and vhost",
     [broker(), rmq_config({"queueType": "classic", "vhost": "v1",
                            "rabbitmqClusterReference": {"name": "c"}})], URL,
     {"url": URL, "queueType": "classic", "vhost": "v1"}),
    ("connectionSecret ConfigMap with credentials",
     [broker(), SECRET_CM, rmq_config({"rabbitmqClusterReference":
                                       {"connectionSecret": {"name": "conn"}}})], "",
     {"url": "amqp://u:p%40ss@h:5673/", "queueType": "quorum"}),
    ("RabbitmqCluster reference",
     [broker({"apiVersion": "rabbitmq.com/v1beta1", "kind": "RabbitmqCluster", "name": "c",
              "namespace": "default"})], URL, {"url": URL, "queueType": "quorum"}),
    ("no spec.config", [broker(None)], URL, "missing field(s): spec.config"),
    ("a ConfigMap is not supported",
     [broker({"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "namespace": "default"})],
     URL, "Configuration not supported"),
    ("config not found", [broker()], URL, "RabbitmqBrokerConfig default/rmq not found"),
    ("bad queueType",
     [broker(), rmq_config({"queueType": "stream", "rabbitmqClusterReference": {"name": "c"}})],
     URL, "queueType must be quorum or classic"),
    ("both name and secret",
     [broker(), rmq_config({"rabbitmqClusterReference": {"name": "c", "connectionSecret":
                                                        {"name": "conn"}}})],
     URL, "must not be set simultaneously"),
    ("no cluster reference", [broker(), rmq_config({})], URL,
     "missing field(s): spec.rabbitmqClusterReference"),
    ("no URL anywhere", [broker(), rmq_config({"rabbitmqClusterReference": {"name": "c"}})], "",
     "no RabbitMQ URL"),
]  # fmt: skip


@pytest.mark.parametrize(("docs", "url", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broker_config(docs: list[dict[str, Any]], url: str, want: dict[str, str] | str) -> None:
    r = compile_(docs, url)
    if isinstance(want, dict):
        (b,) = r.contract.brokers
        assert b.channel == "rabbitmq"
        assert dict(b.channel_config) == want
        annotations = dict(r.statuses[("Broker", "default", "b")].annotations)
        assert "url" not in annotations, "credentials must not reach the status"
    else:
        assert r.contract.brokers == ()
        assert any(want in p.reason for p in r.problems), [str(p) for p in r.problems]


def trigger_doc(annotations: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(
        f"""
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t, namespace: default, annotations: {annotations!r}}}
spec: {{broker: b, subscriber: {{uri: "http://sink/"}}}}
"""
    )
    return doc


@pytest.mark.parametrize(
    ("annotations", "want"),
    [
        ({}, 100),
        ({"rabbitmq.eventing.knative.dev/parallelism": "7"}, 7),
        (
            {"rabbitmq.eventing.knative.dev/parallelism": "7", "kbroker.dev/max-in-flight": "3"},
            3,
        ),
        ({"rabbitmq.eventing.knative.dev/parallelism": "0"}, None),
        ({"rabbitmq.eventing.knative.dev/parallelism": "x"}, None),
    ],
)
def test_parallelism(annotations: dict[str, str], want: int | None) -> None:
    docs = [broker(), rmq_config({"rabbitmqClusterReference": {"name": "c"}})]
    r = compile_([*docs, trigger_doc(annotations)])
    triggers: tuple[contract.Trigger, ...] = r.contract.triggers
    if want is None:
        assert triggers == ()
        assert any("parallelism" in p.field for p in r.problems)
    else:
        assert [t.max_in_flight for t in triggers] == [want]


def test_earliest_is_a_warning_on_rabbitmq() -> None:
    docs = [broker(), rmq_config({"rabbitmqClusterReference": {"name": "c"}})]
    r = compile_([*docs, trigger_doc({"kbroker.dev/start-from": "earliest"})])
    assert len(r.contract.triggers) == 1
    assert any("earliest is not supported" in p.reason for p in r.problems)
