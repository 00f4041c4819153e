"""controller/validate, durations, defaults and status: the pieces the compiler is built from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from kbroker.controller import defaults, durations, status, validate

# --- ISO-8601 durations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT0.2S", 0.2),
        ("PT1S", 1.0),
        ("PT0S", 0.0),
        ("P1DT2H", 93600.0),
        ("PT1M30.5S", 90.5),
        ("PT1,5S", 1.5),
        ("P1W", 604800.0),
        ("P2D", 172800.0),
        ("PT10M", 600.0),
        ("pt2s", 2.0),
        ("P1Y", 365.2425 * 86400),
    ],
)
def test_duration_parses(text: str, seconds: float) -> None:
    assert durations.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P1DT", "1S", "PT1", "-PT1S", "PT1S garbage", "PT1.S", "T1S", "PT1H1H"]
)
def test_duration_rejects(text: str) -> None:
    with pytest.raises(durations.DurationError):
        durations.parse(text)


def test_duration_rejects_non_strings() -> None:
    with pytest.raises(durations.DurationError):
        durations.parse(1)  # type: ignore[arg-type]


# --- attribute names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("type", True),
        ("abcdefghijklmnopqrst", True),
        ("a1", True),
        ("Type", False),
        ("with space", False),
        ("under_score", False),
        ("dash-name", False),
        ("123", False),
        ("ünïcode", False),
        ("punct!", False),
        ("type\n", False),
        ("", False),
        (7, False),
    ],
)
def test_attribute_names(name: Any, ok: bool) -> None:
    assert validate.is_attribute_name(name) is ok


# --- immutability ---------------------------------------------------------------------------


def broker(cls: str | None = None, config: Any = None, delivery: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "b", "namespace": "ns"}
    if cls:
        meta["annotations"] = {validate.CLASS_ANNOTATION: cls}
    spec: dict[str, Any] = {}
    if config is not None:
        spec["config"] = config
    if delivery is not None:
        spec["delivery"] = delivery
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": meta,
        "spec": spec,
    }


def trigger(broker_name: str, uri: str = "http://a/") -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "t"},
        "spec": {"broker": broker_name, "subscriber": {"uri": uri}, "filter": {"attributes": {}}},
    }


CM = {"apiVersion": "v1", "kind": "ConfigMap", "name": "c"}
CLASS_CHANGED = f"Immutable fields changed: metadata.annotations[{validate.CLASS_ANNOTATION}]"

UPDATES: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("trigger broker", trigger("a"), trigger("b"), ["Immutable fields changed: spec.broker"]),
    ("trigger subscriber is mutable", trigger("a"), trigger("a", "http://b/"), []),
    ("broker class", broker("Kafka"), broker("MTChannelBasedBroker"), [CLASS_CHANGED]),
    ("broker class explicit default", broker(), broker("MTChannelBasedBroker"), []),
    ("broker class from default", broker(), broker("Kafka"), [CLASS_CHANGED]),
    (
        "broker config",
        broker(config=CM),
        broker(config={**CM, "name": "d"}),
        ["Immutable fields changed: spec.config"],
    ),
    (
        "broker config namespace defaulted",
        broker(config=CM),
        broker(config={**CM, "namespace": "ns"}),
        [],
    ),
    ("broker config added", broker(), broker(config=CM), ["Immutable fields changed: spec.config"]),
    (
        "broker delivery is mutable",
        broker(delivery={"retry": 1}),
        broker(delivery={"retry": 2}),
        [],
    ),
    (
        "class and config",
        broker("Kafka", CM),
        broker("Other", {**CM, "name": "x"}),
        [CLASS_CHANGED, "Immutable fields changed: spec.config"],
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "want"), [u[1:] for u in UPDATES], ids=[u[0] for u in UPDATES]
)
def test_validate_update(old: dict[str, Any], new: dict[str, Any], want: list[str]) -> None:
    assert validate.validate_update(old, new) == want


def test_validate_update_uses_namespace_default_class() -> None:
    d = defaults.parse("namespaceDefaults:\n  ns:\n    brokerClass: Kafka\n")
    assert validate.validate_update(broker(), broker("Kafka"), defaults=d) == []
    assert validate.validate_update(broker(), broker("MTChannelBasedBroker"), defaults=d) == [
        CLASS_CHANGED
    ]


# --- config-br-defaults ---------------------------------------------------------------------

BR_DEFAULTS = """
clusterDefault:
  brokerClass: MTChannelBasedBroker
  apiVersion: v1
  kind: ConfigMap
  name: config-br-default-channel
  namespace: knative-eventing
  delivery: {retry: 1}
  brokerClasses:
    Kafka:
      delivery: {retry: 2}
namespaceDefaults:
  ns1:
    brokerClass: Kafka
    delivery: {retry: 3}
    brokerClasses:
      Special:
        delivery: {retry: 4}
  ns2:
    delivery: {retry: 5}
"""


@pytest.mark.parametrize(
    ("ns", "cls", "retry"),
    [
        ("ns1", "Kafka", 3),  # the namespace's own class: its inline config
        ("ns1", "Special", 4),  # the namespace's brokerClasses map
        ("ns1", "MTChannelBasedBroker", 1),  # not configured in ns1: cluster default
        ("other", "Kafka", 2),  # cluster brokerClasses
        ("other", "Unknown", 1),  # unknown classes fall back to the cluster default
        ("ns2", "MTChannelBasedBroker", 1),  # ns2 has no class: its inline config never applies
    ],
)
def test_defaults_lookup_order(ns: str, cls: str, retry: int) -> None:
    config = defaults.parse(BR_DEFAULTS).broker_config(ns, cls)
    assert config is not None and config.delivery == {"retry": retry}


def test_defaults_class_and_config_ref() -> None:
    d = defaults.parse(BR_DEFAULTS)
    assert d.broker_class("ns1") == "Kafka"
    assert d.broker_class("ns2") == "MTChannelBasedBroker"
    cluster = d.broker_config("x", "MTChannelBasedBroker")
    assert cluster is not None and cluster.config == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "config-br-default-channel",
        "namespace": "knative-eventing",
    }
    assert defaults.Defaults().broker_class("x") is None
    assert defaults.Defaults().broker_config("x", "y") is None


def test_shipped_defaults() -> None:
    d = defaults.shipped()
    config = d.broker_config("any", "AnyClass")
    assert config is not None and config.delivery == {
        "retry": 10,
        "backoffPolicy": "exponential",
        "backoffDelay": "PT0.2S",
    }
    assert d.broker_class("any") is None  # the Environment's default class applies


@pytest.mark.parametrize(
    "text",
    [
        "clusterDefault: [1]",
        "namespaceDefaults: [1]",
        "clusterDefault: {brokerClasses: [1]}",
        ": :",
    ],
)
def test_defaults_rejects(text: str) -> None:
    with pytest.raises(defaults.DefaultsError):
        defaults.parse(text)


def test_defaults_from_configmap_needs_the_key() -> None:
    with pytest.raises(defaults.DefaultsError, match="default-br-config"):
        defaults.from_configmap({"other": "x"})
    assert defaults.from_configmap({"default-br-config": ""}) == defaults.Defaults()


# --- status -----------------------------------------------------------------------------------


def test_ready_aggregates_first_false_then_unknown() -> None:
    conds = status.with_ready(
        ("A", "B", "C"),
        {
            "A": status.true("A"),
            "B": status.unknown("B", "Wait"),
            "C": status.false("C", "Bad", "m"),
        },
    )
    assert [c.type for c in conds] == ["Ready", "A", "B", "C"]
    assert conds[0] == status.Condition("Ready", "False", "Bad", "m")
    conds = status.with_ready(("A", "B"), {"A": status.true("A")})
    assert conds[0].status == "Unknown" and conds[2] == status.Condition("B", "Unknown")
    conds = status.with_ready(("A",), {"A": status.true("A", "Fine")})
    assert conds[0] == status.Condition("Ready", "True")


def test_to_k8s_shape_and_transition_times() -> None:
    st = status.ObjectStatus(
        kind="Broker",
        namespace="ns",
        name="b",
        generation=3,
        conditions=status.with_ready(("Addressable",), {"Addressable": status.true("Addressable")}),
        address_url="http://h/ns/b",
        dead_letter_sink_uri="http://dls/",
        annotations=(("default.topic", "t"),),
    )
    t1 = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    out = st.to_k8s(now=t1)
    assert out == {
        "observedGeneration": 3,
        "conditions": [
            {"type": "Addressable", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"},
        ],
        "address": {"name": "http", "url": "http://h/ns/b"},
        "addresses": [{"name": "http", "url": "http://h/ns/b"}],
        "deadLetterSinkUri": "http://dls/",
        "annotations": {"default.topic": "t"},
    }
    assert st.ready
    # A later write keeps the time of unchanged conditions and stamps the changed ones.
    later = status.ObjectStatus(
        "Broker",
        "ns",
        "b",
        4,
        status.with_ready(
            ("Addressable",), {"Addressable": status.false("Addressable", "NoURL", "x")}
        ),
    )
    t2 = datetime(2026, 1, 3, tzinfo=UTC)
    again = st.to_k8s(now=t2, previous=out)
    assert [c["lastTransitionTime"] for c in again["conditions"]] == ["2026-01-02T03:04:05Z"] * 2
    changed = later.to_k8s(now=t2, previous=out)
    assert changed["conditions"][0] == {
        "type": "Addressable",
        "status": "False",
        "lastTransitionTime": "2026-01-03T00:00:00Z",
        "reason": "NoURL",
        "message": "x",
    }
    assert "address" not in changed and not later.ready


def test_kafka_config_validation() -> None:
    issues = validate.Issues()
    data = yaml.safe_load(
        "bootstrap.servers: ' a:1,b:2 '\ndefault.topic.partitions: 0\n"
        "default.topic.replication.factor: '3'\nauth.secret.ref.name: s\nother: x\n"
    )
    out = validate.kafka_config(data, "cm", issues)
    assert out == {"bootstrap.servers": "a:1,b:2", "default.topic.replication.factor": "3"}
    assert [(i.field, i.severity) for i in issues.items] == [
        ("cm.default.topic.partitions", "error"),
        ("cm.auth.secret.ref.name", "warning"),
    ]
