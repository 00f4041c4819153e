"""controller/compiler with brokers and triggers: Knative objects in, contract entries and
conditions out (table-driven)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kbroker.controller import compiler, resolve, status
from kbroker.core import contract

BASE = "http://127.0.0.1:8080"
TESTDATA = Path(__file__).parent / "testdata"


def objects(text: str, source: str = "test.yaml") -> list[compiler.SourcedObject]:
    return [compiler.SourcedObject(d, source) for d in yaml.safe_load_all(text) if d is not None]


def fixture(name: str) -> list[compiler.SourcedObject]:
    path = TESTDATA / name
    return objects(path.read_text(), str(path))


def run(text: str, **env: Any) -> compiler.CompileResult:
    return compiler.compile(objects(text), compiler.Environment(BASE, **env))


def cond(
    r: compiler.CompileResult, kind: str, name: str, type_: str = "Ready", ns: str = "default"
) -> status.Condition:
    c = r.statuses[(kind, ns, name)].condition(type_)
    assert c is not None, f"{kind} {name} has no {type_} condition"
    return c


def trigger(r: compiler.CompileResult, name: str, ns: str = "default") -> contract.Trigger:
    for t in r.contract.triggers:
        if (t.namespace, t.name) == (ns, name):
            return t
    raise AssertionError(f"Trigger {ns}/{name} is not in the contract")


def broker_yaml(name: str = "default", ns: str = "default", **extra: Any) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": ns},
    }
    if extra.get("annotations"):
        doc["metadata"]["annotations"] = extra.pop("annotations")
    if extra:
        doc["spec"] = extra
    return yaml.safe_dump(doc)


def trigger_yaml(name: str = "t", ns: str = "default", **spec: Any) -> str:
    annotations = spec.pop("annotations", None)
    spec.setdefault("broker", "default")
    spec.setdefault("subscriber", {"uri": "http://127.0.0.1:9000/"})
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return yaml.safe_dump(
        {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": meta, "spec": spec}
    )


def docs(*parts: str) -> str:
    return "\n---\n".join(parts)


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_applied() -> None:
    r = compiler.compile(fixture("basic.yaml"), compiler.Environment(BASE))
    assert r.contract.generation == 1
    (b,) = r.contract.brokers
    assert b == contract.Broker(
        namespace="default",
        name="default",
        uid=str(uuid.uuid5(uuid.NAMESPACE_URL, "broker/default/default")),
        address=f"{BASE}/default/default",
        channel="embedded",
        topic="knative-broker-default-default",
        generation=1,
    )
    orders = trigger(r, "orders")
    assert orders.delivery == contract.DeliverySpec(
        retry=10, backoff_policy=contract.BackoffPolicy.EXPONENTIAL, backoff_delay=0.2
    )
    assert orders.filters == (contract.FilterSpec("attributes", (("type", "com.example.order"),)),)
    assert orders.consumer_group == "knative-trigger-default-orders"
    assert orders.uid == str(uuid.uuid5(uuid.NAMESPACE_URL, "trigger/default/orders"))
    assert (orders.order, orders.max_in_flight, orders.start_from) == (
        contract.DeliveryOrder.UNORDERED,
        100,
        contract.StartFrom.LATEST,
    )
    assert trigger(r, "everything").filters == ()
    assert [p for p in r.problems if p.severity == "error"] == []
    bst = r.statuses[("Broker", "default", "default")]
    assert bst.ready and bst.address_url == f"{BASE}/default/default"
    assert [c.type for c in bst.conditions] == ["Ready", *status.BROKER_CONDITIONS]
    dls = cond(r, "Broker", "default", "DeadLetterSinkResolved")
    assert (dls.status, dls.reason) == ("True", "DeadLetterSinkNotConfigured")
    assert cond(r, "Broker", "default", "EventPoliciesReady").reason == "OIDCDisabled"
    tst = r.statuses[("Trigger", "default", "orders")]
    assert tst.ready and tst.subscriber_uri == "http://127.0.0.1:9001/orders"
    assert [c.type for c in tst.conditions] == ["Ready", *status.TRIGGER_CONDITIONS]


def test_config_br_defaults_class_and_delivery_per_namespace() -> None:
    text = docs(broker_yaml("a", "kafka-ns"), broker_yaml("b", "other"))
    env = compiler.Environment(BASE, default_kafka_config=(("bootstrap.servers", "k:9092"),))
    r = compiler.compile([*fixture("br-defaults.yaml"), *objects(text)], env)
    a, b = r.contract.brokers
    assert (a.name, a.channel, a.channel_config) == (
        "a",
        "kafka",
        (("bootstrap.servers", "k:9092"),),
    )
    assert (b.name, b.channel) == ("b", "embedded")
    text_t = docs(
        trigger_yaml("ta", "kafka-ns", broker="a"), trigger_yaml("tb", "other", broker="b")
    )
    r = compiler.compile([*fixture("br-defaults.yaml"), *objects(text), *objects(text_t)], env)
    assert trigger(r, "ta", "kafka-ns").delivery == contract.DeliverySpec(
        retry=5, backoff_policy=contract.BackoffPolicy.EXPONENTIAL, backoff_delay=1.0
    )
    assert trigger(r, "tb", "other").delivery == contract.DeliverySpec(
        retry=2, backoff_policy=contract.BackoffPolicy.LINEAR, backoff_delay=0.5
    )


def test_bad_config_br_defaults_is_reported_and_builtin_defaults_used() -> None:
    cm = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "config-br-defaults"},
            "data": {"default-br-config": "clusterDefault: [not, a, mapping]"},
        }
    )
    r = run(docs(cm, broker_yaml(), trigger_yaml()))
    assert any("default-br-config" in p.field and p.severity == "error" for p in r.problems)
    assert trigger(r, "t").delivery.retry == 10


def test_broker_delivery_set_is_not_merged_with_defaults() -> None:
    r = run(docs(broker_yaml(delivery={"retry": 2}), trigger_yaml()))
    assert trigger(r, "t").delivery == contract.DeliverySpec(retry=2)


# --- delivery precedence (conformance 7) -----------------------------------------------------


def test_trigger_delivery_overrides_broker_delivery_as_a_whole() -> None:
    r = compiler.compile(fixture("delivery-matrix.yaml"), compiler.Environment(BASE))
    assert trigger(r, "own-dls").delivery == contract.DeliverySpec(
        retry=1,
        backoff_policy=contract.BackoffPolicy.LINEAR,
        backoff_delay=1.0,
        dead_letter_uri="http://127.0.0.1:9102/trigger-dls",
    )
    # No DLS of its own: events that fail are dropped, the Broker's DLS is NOT inherited.
    assert trigger(r, "own-no-dls").delivery == contract.DeliverySpec(retry=1)
    assert trigger(r, "inherits").delivery == contract.DeliverySpec(
        retry=3, dead_letter_uri="http://127.0.0.1:9100/broker-dls"
    )
    assert r.statuses[("Broker", "default", "br")].dead_letter_sink_uri == (
        "http://127.0.0.1:9100/broker-dls"
    )
    assert r.statuses[("Trigger", "default", "inherits")].dead_letter_sink_uri == (
        "http://127.0.0.1:9100/broker-dls"
    )
    no_dls = cond(r, "Trigger", "own-no-dls", "DeadLetterSinkResolved")
    assert (no_dls.status, no_dls.reason) == ("True", "DeadLetterSinkNotConfigured")


# --- Trigger lifecycle ------------------------------------------------------------------------


def test_trigger_before_broker_then_ready_when_broker_appears() -> None:
    env = compiler.Environment(BASE)
    first = compiler.compile(objects(trigger_yaml()), env)
    assert first.contract.triggers == ()
    broker_ready = cond(first, "Trigger", "t", "BrokerReady")
    assert (broker_ready.status, broker_ready.reason) == ("False", "BrokerDoesNotExist")
    assert '"default"' in broker_ready.message
    ready = cond(first, "Trigger", "t")
    assert (ready.status, ready.reason) == ("False", "BrokerDoesNotExist")
    second = compiler.compile(objects(docs(trigger_yaml(), broker_yaml())), env, first.contract)
    assert cond(second, "Trigger", "t").status == "True"
    assert trigger(second, "t").broker == "default"
    assert second.contract.generation == 2


def test_trigger_of_broker_that_is_not_ready_copies_the_broker_reason() -> None:
    r = run(docs(broker_yaml(delivery={"retry": -1}), trigger_yaml()))
    assert r.contract.brokers == () and r.contract.triggers == ()
    b = cond(r, "Broker", "default")
    assert (b.status, b.reason) == ("False", "InvalidDelivery")
    assert "spec.delivery.retry" in b.message
    t = cond(r, "Trigger", "t", "BrokerReady")
    assert (t.status, t.reason, t.message) == ("False", b.reason, b.message)


def test_trigger_without_broker_field() -> None:
    r = run(docs(broker_yaml(), trigger_yaml(broker="")))
    c = cond(r, "Trigger", "t", "BrokerReady")
    assert c.status == "False" and "spec.broker" in c.message
    assert r.contract.triggers == ()


def test_unknown_broker_class_is_not_ours() -> None:
    foreign = broker_yaml("rabbit", annotations={"eventing.knative.dev/broker.class": "RabbitMQ"})
    r = run(docs(foreign, trigger_yaml(broker="rabbit"), broker_yaml(), trigger_yaml("ok")))
    assert [b.name for b in r.contract.brokers] == ["default"]
    assert ("Broker", "default", "rabbit") not in r.statuses
    assert ("Trigger", "default", "t") not in r.statuses
    assert trigger(r, "ok")
    assert any("RabbitMQ" in p.reason and p.severity == "warning" for p in r.problems)


def test_a_bad_object_does_not_affect_others() -> None:
    bad = trigger_yaml("bad", filters=[{"exact": {"Type": "x"}}])
    r = run(docs(broker_yaml(), bad, trigger_yaml("good")))
    assert [t.name for t in r.contract.triggers] == ["good"]
    assert cond(r, "Trigger", "good").status == "True"
    assert cond(r, "Trigger", "bad").status == "False"
    (p,) = [p for p in r.problems if p.severity == "error"]
    assert (p.source, p.kind, p.namespace, p.name, p.field) == (
        "test.yaml",
        "Trigger",
        "default",
        "bad",
        "spec.filters[0].exact",
    )


# --- subscriber and dead-letter resolution -------------------------------------------------


class DictResolver:
    def __init__(self, urls: Mapping[str, str]) -> None:
        self.urls = urls

    def resolve(self, ref: Mapping[str, Any], namespace: str) -> str:
        try:
            return self.urls[f"{ref['kind']}/{ref['namespace']}/{ref['name']}"]
        except KeyError:
            raise resolve.ResolveError(f"{ref['kind']} {ref['name']!r} not found") from None


SVC_REF = {"apiVersion": "v1", "kind": "Service", "name": "svc"}
BROKER_REF = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}

SUBSCRIBERS: list[tuple[str, dict[str, Any], Any, str | None, str]] = [
    ("absolute uri", {"uri": "http://h:1/p"}, None, "http://h:1/p", ""),
    ("https uri", {"uri": "https://h/p"}, None, "https://h/p", ""),
    ("relative uri alone", {"uri": "/p"}, None, None, "not an absolute"),
    ("no scheme", {"uri": "h:1/p"}, None, None, "not an absolute"),
    ("neither ref nor uri", {}, None, None, "expected at least one"),
    ("broker ref", {"ref": BROKER_REF}, None, f"{BASE}/default/default", ""),
    (
        "broker ref + relative uri",
        {"ref": BROKER_REF, "uri": "extra"},
        None,
        f"{BASE}/default/extra",
        "",
    ),
    ("missing broker ref", {"ref": {**BROKER_REF, "name": "nope"}}, None, None, "does not exist"),
    ("ref without kind", {"ref": {"apiVersion": "v1", "name": "x"}}, None, None, "kind"),
    ("service ref standalone", {"ref": SVC_REF}, None, None, "only Broker refs and absolute URIs"),
    (
        "service ref resolver",
        {"ref": SVC_REF, "uri": "/update"},
        DictResolver({"Service/default/svc": "http://svc.default.svc.cluster.local/"}),
        "http://svc.default.svc.cluster.local/update",
        "",
    ),
    ("service ref resolver fails", {"ref": SVC_REF}, DictResolver({}), None, "'svc' not found"),
]


@pytest.mark.parametrize(
    ("subscriber", "resolver", "want_uri", "want_msg"),
    [c[1:] for c in SUBSCRIBERS],
    ids=[c[0] for c in SUBSCRIBERS],
)
def test_subscriber_resolution(
    subscriber: dict[str, Any], resolver: Any, want_uri: str | None, want_msg: str
) -> None:
    r = run(docs(broker_yaml(), trigger_yaml(subscriber=subscriber)), resolver=resolver)
    st = r.statuses[("Trigger", "default", "t")]
    c = cond(r, "Trigger", "t", "SubscriberResolved")
    assert st.subscriber_uri == want_uri
    if want_uri is None:
        assert (c.status, c.reason) == ("False", "Unable to get the Subscriber's URI")
        assert want_msg in c.message
        assert r.contract.triggers == () and not st.ready
    else:
        assert c.status == "True" and trigger(r, "t").subscriber_uri == want_uri


def test_dead_letter_sink_resolution() -> None:
    sink = broker_yaml("sink")
    dls_broker = broker_yaml(delivery={"deadLetterSink": {"ref": {**BROKER_REF, "name": "sink"}}})
    r = run(docs(sink, dls_broker, trigger_yaml()))
    assert trigger(r, "t").delivery.dead_letter_uri == f"{BASE}/default/sink"
    assert (
        r.statuses[("Broker", "default", "default")].dead_letter_sink_uri == f"{BASE}/default/sink"
    )
    # The sink's Broker missing: the Broker is not Ready (spec: DLS resolved before Ready).
    r = run(docs(dls_broker, trigger_yaml()))
    c = cond(r, "Broker", "default", "DeadLetterSinkResolved")
    assert (c.status, c.reason) == ("False", "Unable to get the DeadLetterSink's URI")
    assert cond(r, "Broker", "default").reason == c.reason
    assert r.contract.brokers == () and r.contract.triggers == ()
    # A Trigger's own DLS that does not resolve marks only that Trigger.
    bad_dls = trigger_yaml("bad", delivery={"deadLetterSink": {"ref": SVC_REF}})
    r = run(docs(broker_yaml(), bad_dls, trigger_yaml("ok")))
    c = cond(r, "Trigger", "bad", "DeadLetterSinkResolved")
    assert c.status == "False" and "only Broker refs" in c.message
    assert [t.name for t in r.contract.triggers] == ["ok"]


# --- filters ------------------------------------------------------------------------------------

FILTERS: list[tuple[str, dict[str, Any], tuple[contract.FilterSpec, ...] | None, str]] = [
    (
        "filters overrides filter",
        {"filter": {"attributes": {"type": "a"}}, "filters": [{"exact": {"type": "b"}}]},
        (contract.FilterSpec("exact", (("type", "b"),)),),
        "",
    ),
    (
        "empty filters leaves the legacy filter",
        {"filter": {"attributes": {"type": "a"}}, "filters": []},
        (contract.FilterSpec("attributes", (("type", "a"),)),),
        "",
    ),
    ("empty legacy filter", {"filter": {}}, (), ""),
    (
        "legacy empty value kept",
        {"filter": {"attributes": {"source": "", "type": "a"}}},
        (contract.FilterSpec("attributes", (("source", ""), ("type", "a"))),),
        "",
    ),
    (
        "nested dialects",
        {
            "filters": [
                {"any": [{"prefix": {"type": "com."}}, {"suffix": {"source": "/x"}}]},
                {"not": {"exact": {"subject": "s"}}},
                {},
            ]
        },
        (
            contract.FilterSpec(
                "any",
                children=(
                    contract.FilterSpec("prefix", (("type", "com."),)),
                    contract.FilterSpec("suffix", (("source", "/x"),)),
                ),
            ),
            contract.FilterSpec(
                "not", children=(contract.FilterSpec("exact", (("subject", "s"),)),)
            ),
            contract.FilterSpec("all"),
        ),
        "",
    ),
    (
        "multiple dialects",
        {"filters": [{"exact": {"type": "a"}, "suffix": {"type": "b"}}]},
        None,
        "spec.filters[0]: multiple dialects found, filters can have only one dialect set",
    ),
    (
        "multiple dialects nested",
        {"filters": [{"all": [{"exact": {"type": "a"}, "cesql": "true"}]}]},
        None,
        "spec.filters[0].all[0]: multiple dialects found",
    ),
    ("unknown dialect", {"filters": [{"regex": {"type": "a"}}]}, None, "unknown dialect(s) regex"),
    ("non-string value", {"filters": [{"exact": {"type": 5}}]}, None, "spec.filters[0].exact.type"),
    ("filters not a list", {"filters": {"exact": {"type": "a"}}}, None, "expected a list"),
]


@pytest.mark.parametrize(
    ("spec", "want", "want_msg"), [c[1:] for c in FILTERS], ids=[c[0] for c in FILTERS]
)
def test_filters(
    spec: dict[str, Any], want: tuple[contract.FilterSpec, ...] | None, want_msg: str
) -> None:
    r = run(docs(broker_yaml(), trigger_yaml(**spec)))
    if want is None:
        c = cond(r, "Trigger", "t", "SubscriptionReady")
        assert (c.status, c.reason) == ("False", "InvalidFilter")
        assert want_msg in c.message
        assert cond(r, "Trigger", "t").status == "False"
        assert r.contract.triggers == ()
    else:
        assert trigger(r, "t").filters == want


BAD_NAMES = ["Type", "TYPE", "with space", "under_score", "dash-name", "123", "1abc", "ünïcode"]
BAD_NAMES += ["punct!", "dot.name", "a/b", ""]
GOOD_NAMES = [
    "abcdefghijklmnopqrst",  # 20 characters, as in conformance
    "a",
    "a1",
    "type",
    "knativeerrordest",
]


@pytest.mark.parametrize("where", ["filter", "exact", "prefix", "suffix"])
@pytest.mark.parametrize("name", BAD_NAMES + GOOD_NAMES)
def test_attribute_names(where: str, name: str) -> None:
    if where == "filter":
        spec: dict[str, Any] = {"filter": {"attributes": {name: "v"}}}
    else:
        spec = {"filters": [{where: {name: "v"}}]}
    r = run(docs(broker_yaml(), trigger_yaml(**spec)))
    if name in GOOD_NAMES:
        assert trigger(r, "t").filters[0].attributes == ((name, "v"),)
    else:
        c = cond(r, "Trigger", "t", "SubscriptionReady")
        assert c.status == "False" and "invalid key name" in c.message
        assert r.contract.triggers == ()


# --- CESQL ----------------------------------------------------------------------------------


def test_cesql_with_the_real_parser() -> None:
    good = trigger_yaml("good", filters=[{"cesql": "type = 'com.example' AND source LIKE '%x'"}])
    bad = trigger_yaml("bad", filters=[{"cesql": "type = = 'a'"}])
    r = run(docs(broker_yaml(), good, bad))
    assert trigger(r, "good").filters[0].dialect == "cesql"
    c = cond(r, "Trigger", "bad", "SubscriptionReady")
    assert (c.status, c.reason) == ("False", "InvalidFilter") and c.message


def test_cesql_parse_errors_and_warnings() -> None:
    good = trigger_yaml("good", filters=[{"cesql": "NOSUCH(type) = 'a'"}])
    bad = trigger_yaml("bad", filters=[{"not": {"cesql": "type == 'a'"}}])
    r = run(docs(broker_yaml(), good, bad))
    assert trigger(r, "good").filters == (
        contract.FilterSpec("cesql", expression="NOSUCH(type) = 'a'"),
    )
    assert r.statuses[("Trigger", "default", "good")].warnings == (
        "spec.filters[0].cesql: unknown function NOSUCH with 1 argument(s): "
        "always false with a missingFunction error",
    )
    c = cond(r, "Trigger", "bad")
    assert (c.status, c.reason) == ("False", "InvalidFilter")
    assert c.message.startswith("spec.filters[0].not.cesql: expected an expression, found '='")


# --- delivery parsing -------------------------------------------------------------------------

DELIVERIES: list[tuple[str, dict[str, Any], contract.DeliverySpec | None, str]] = [
    ("empty", {}, contract.DeliverySpec(), ""),
    (
        "all fields",
        {
            "retry": 4,
            "backoffPolicy": "linear",
            "backoffDelay": "PT1M30.5S",
            "timeout": "PT2S",
            "retryAfterMax": "P1DT2H",
            "format": "json",
        },
        contract.DeliverySpec(4, contract.BackoffPolicy.LINEAR, 90.5, 2.0, 93600.0, None, "json"),
        "",
    ),
    ("negative retry", {"retry": -1}, None, "spec.delivery.retry"),
    ("string retry", {"retry": "3"}, None, "spec.delivery.retry"),
    ("bool retry", {"retry": True}, None, "spec.delivery.retry"),
    ("bad policy", {"backoffPolicy": "fibonacci"}, None, "spec.delivery.backoffPolicy"),
    ("bad delay", {"backoffDelay": "1s"}, None, "spec.delivery.backoffDelay"),
    ("garbage delay", {"backoffDelay": "PT1S; rm -rf"}, None, "spec.delivery.backoffDelay"),
    ("zero timeout", {"timeout": "PT0S"}, None, "spec.delivery.timeout"),
    ("bad format", {"format": "xml"}, None, "spec.delivery.format"),
    ("unknown field", {"retries": 3}, None, "spec.delivery.retries: unknown field"),
]


@pytest.mark.parametrize(
    ("delivery", "want", "want_msg"), [c[1:] for c in DELIVERIES], ids=[c[0] for c in DELIVERIES]
)
def test_trigger_delivery_parsing(
    delivery: dict[str, Any], want: contract.DeliverySpec | None, want_msg: str
) -> None:
    r = run(docs(broker_yaml(), trigger_yaml(delivery=delivery)))
    if want is None:
        c = cond(r, "Trigger", "t")
        assert (c.status, c.reason) == ("False", "InvalidDelivery")
        assert want_msg in c.message
        assert r.contract.triggers == ()
    else:
        assert trigger(r, "t").delivery == want


def test_broker_delivery_error_names_the_field() -> None:
    r = run(broker_yaml(delivery={"backoffDelay": "soon"}))
    c = cond(r, "Broker", "default", "FilterReady")
    assert c.status == "False" and c.message.startswith("spec.delivery.backoffDelay:")
    assert r.contract.brokers == ()


# --- Kafka and annotations ----------------------------------------------------------------------


def test_kafka_brokers_and_trigger_annotations() -> None:
    r = compiler.compile(fixture("kafka.yaml"), compiler.Environment(BASE))
    ext, orders = r.contract.brokers
    assert orders.channel == "kafka" and orders.topic == "knative-broker-team-orders"
    assert not orders.external_topic
    assert orders.channel_config == (
        ("bootstrap.servers", "127.0.0.1:9092"),
        ("default.topic.config.retention.ms", "3600000"),
        ("default.topic.partitions", "6"),
        ("default.topic.replication.factor", "1"),
    )
    assert (ext.topic, ext.external_topic) == ("shared-orders", True)
    audit = trigger(r, "audit", "team")
    assert audit.order == contract.DeliveryOrder.ORDERED
    assert audit.max_in_flight == 7 and audit.start_from == contract.StartFrom.EARLIEST
    assert audit.subscriber_uri == f"{BASE}/team/replies"
    assert audit.consumer_group == "knative-trigger-team-audit"
    annotations = dict(r.statuses[("Trigger", "team", "audit")].annotations)
    assert annotations["group.id"] == "knative-trigger-team-audit"
    assert dict(r.statuses[("Broker", "team", "orders")].annotations)["default.topic"] == (
        "knative-broker-team-orders"
    )


KAFKA_CLASS = {"eventing.knative.dev/broker.class": "Kafka"}
CM_REF = {"apiVersion": "v1", "kind": "ConfigMap", "name": "missing"}


@pytest.mark.parametrize(
    ("broker", "env", "want_ready", "want_msg"),
    [
        (broker_yaml(annotations=KAFKA_CLASS), {}, False, "no bootstrap.servers"),
        (
            broker_yaml(annotations=KAFKA_CLASS),
            {"default_kafka_config": (("bootstrap.servers", "k:1"),)},
            True,
            "",
        ),
        (
            broker_yaml(annotations=KAFKA_CLASS, config=CM_REF),
            {"default_kafka_config": (("bootstrap.servers", "k:1"),)},
            False,
            "ConfigMap default/missing not found",
        ),
        (
            # Under `kbroker run --kafka` MT maps to Kafka; its spec.config is a channel template.
            broker_yaml(config=CM_REF),
            {
                "default_kafka_config": (("bootstrap.servers", "k:1"),),
                "class_channels": {"MTChannelBasedBroker": "kafka"},
            },
            True,
            "",
        ),
        (
            broker_yaml(
                annotations={"eventing.knative.dev/broker.class": "KafkaNamespaced"},
                config={**CM_REF, "namespace": "elsewhere"},
            ),
            {"default_kafka_config": (("bootstrap.servers", "k:1"),)},
            False,
            "own namespace",
        ),
    ],
    ids=["no bootstrap", "bootstrap from env", "missing configmap", "mt on kafka", "namespaced"],
)
def test_kafka_config_sources(
    broker: str, env: dict[str, Any], want_ready: bool, want_msg: str
) -> None:
    r = run(broker, **env)
    c = cond(r, "Broker", "default", "TriggerChannelReady")
    assert (c.status == "True") == want_ready
    assert want_msg in c.message
    assert len(r.contract.brokers) == int(want_ready)


@pytest.mark.parametrize(
    ("annotation", "value", "field"),
    [
        ("kafka.eventing.knative.dev/delivery.order", "sorted", "delivery.order"),
        ("kbroker.dev/max-in-flight", "0", "max-in-flight"),
        ("kbroker.dev/max-in-flight", "ten", "max-in-flight"),
        ("kbroker.dev/start-from", "yesterday", "start-from"),
        ("knative.dev/dependency", "{not json", "knative.dev/dependency"),
    ],
)
def test_bad_trigger_annotations(annotation: str, value: str, field: str) -> None:
    r = run(docs(broker_yaml(), trigger_yaml(annotations={annotation: value})))
    c = cond(r, "Trigger", "t")
    assert (c.status, c.reason) == ("False", "InvalidAnnotation") and field in c.message


def test_broker_durability_annotation() -> None:
    r = run(broker_yaml(annotations={"kbroker.dev/durability": "Leader"}))
    assert r.contract.brokers[0].default_durability == contract.Durability.LEADER


# --- generation, identity, ordering, problems -------------------------------------------------


def test_generation_bumps_only_on_change() -> None:
    env = compiler.Environment(BASE)
    objs = fixture("basic.yaml")
    first = compiler.compile(objs, env)
    same = compiler.compile(objs, env, first.contract)
    assert (first.contract.generation, same.contract.generation) == (1, 1)
    changed = compiler.compile(objs[:2], env, same.contract)
    assert changed.contract.generation == 2
    again = compiler.compile(objs[:2], env, changed.contract)
    assert again.contract.generation == 2
    assert compiler.compile(objs, env, contract.Contract(generation=41)).contract.generation == 42


def test_metadata_uid_and_generation_are_used() -> None:
    text = broker_yaml().replace(
        "name: default\n", "name: default\n  uid: abc-123\n  generation: 4\n"
    )
    r = run(text)
    assert (r.contract.brokers[0].uid, r.contract.brokers[0].generation) == ("abc-123", 4)
    assert r.statuses[("Broker", "default", "default")].generation == 4


def test_output_does_not_depend_on_input_order() -> None:
    objs = [*fixture("basic.yaml"), *fixture("kafka.yaml"), *fixture("delivery-matrix.yaml")]
    env = compiler.Environment(BASE)
    want = compiler.compile(objs, env)
    for seed in range(3):
        shuffled = list(objs)
        random.Random(seed).shuffle(shuffled)
        got = compiler.compile(shuffled, env)
        assert got.contract.to_json() == want.contract.to_json()
        assert list(got.statuses) == list(want.statuses)
    assert contract.Contract.from_json(want.contract.to_json()) == want.contract


def test_other_kinds_and_duplicates_are_reported() -> None:
    secret = yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})
    old = broker_yaml().replace("eventing.knative.dev/v1", "eventing.knative.dev/v1beta1")
    objs = [
        *objects(docs(secret, old, broker_yaml()), "a.yaml"),
        *objects(broker_yaml(delivery={"retry": 1}), "b.yaml"),
    ]
    r = compiler.compile(objs, compiler.Environment(BASE))
    warnings = [str(p) for p in r.problems if p.severity == "warning"]
    assert any("unsupported kind v1/Secret" in w for w in warnings)
    assert any("eventing.knative.dev/v1beta1/Broker" in w for w in warnings)
    (dup,) = [p for p in r.problems if p.severity == "error"]
    assert dup.source == "b.yaml" and "also defined in a.yaml" in dup.reason
    assert len(r.contract.brokers) == 1


def test_problem_str() -> None:
    p = compiler.Problem(
        "examples/t.yaml",
        "Trigger",
        "default",
        "foo",
        "spec.filters[0]",
        "multiple dialects found, filters can have only one dialect set",
    )
    assert str(p) == (
        "examples/t.yaml: Trigger default/foo: spec.filters[0]: multiple dialects found, "
        "filters can have only one dialect set"
    )
    assert str(compiler.Problem("x.yaml", "", "", "", "", "invalid YAML")) == "x.yaml: invalid YAML"


def test_validate_update_is_exported() -> None:
    old = yaml.safe_load(trigger_yaml())
    new = yaml.safe_load(trigger_yaml(broker="other"))
    assert compiler.validate_update(old, new) == ["Immutable fields changed: spec.broker"]


@pytest.mark.parametrize(
    ("name", "ns", "field"),
    [
        ("Upper", "default", "metadata.name"),
        ("a/b", "default", "metadata.name"),
        ("-lead", "default", "metadata.name"),
        ("ok", "bad.ns", "metadata.namespace"),
        ("ok", "x" * 64, "metadata.namespace"),
    ],
)
def test_object_names_must_be_kubernetes_names(name: str, ns: str, field: str) -> None:
    r = run(docs(broker_yaml(name, ns), broker_yaml("fine")))
    (p,) = [p for p in r.problems if p.severity == "error"]
    assert p.field == field and (p.kind, p.name) == ("Broker", name)
    assert [b.name for b in r.contract.brokers] == ["fine"]


def test_foreign_broker_ref_goes_to_the_resolver() -> None:
    resolver = DictResolver({"Broker/default/other": "http://other-broker/default/other"})
    t = trigger_yaml(subscriber={"ref": {**BROKER_REF, "name": "other"}})
    r = run(docs(broker_yaml(), t), resolver=resolver)
    assert trigger(r, "t").subscriber_uri == "http://other-broker/default/other"
