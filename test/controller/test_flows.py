"""Sequences, Parallels, channels and Subscriptions compiled: Knative's wiring, names, status,
validation and immutability, and the contract entries the data plane gets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from kbroker.controller import compiler, files, flows
from kbroker.core import contract

ENV = compiler.Environment("http://ingress")
IMC = {"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel"}


def run(*docs: dict[str, Any], env: compiler.Environment = ENV) -> compiler.CompileResult:
    return compiler.compile([compiler.SourcedObject(d, "t.yaml") for d in docs], env)


def seq(name: str = "s", **spec: Any) -> dict[str, Any]:
    spec.setdefault("steps", [{"uri": "http://a/"}, {"uri": "http://b/"}, {"uri": "http://c/"}])
    return {
        "apiVersion": "flows.knative.dev/v1",
        "kind": "Sequence",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }


def par(name: str = "p", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flows.knative.dev/v1",
        "kind": "Parallel",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }


def channel(name: str, kind: str = "Channel", **spec: Any) -> dict[str, Any]:
    api = {"KafkaChannel": "messaging.knative.dev/v1beta1"}.get(kind, "messaging.knative.dev/v1")
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    }


def subscription(name: str, channel_name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("subscriber", {"uri": "http://sub/"})
    ch = {"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel", "name": channel_name}
    return {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"channel": ch, **spec},
    }


def broker() -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "default", "namespace": "ns"},
    }


def subs(r: compiler.CompileResult) -> dict[str, contract.Trigger]:
    return {t.name: t for t in r.contract.triggers if t.kind == contract.SUBSCRIPTION}


def chans(r: compiler.CompileResult) -> dict[str, contract.Broker]:
    return {b.name: b for b in r.contract.brokers if b.kind == contract.CHANNEL}


def ready(r: compiler.CompileResult, kind: str, name: str) -> tuple[str, str]:
    c = r.statuses[(kind, "ns", name)].conditions[0]
    return c.status, c.message


def test_sequence_compiles_to_knatives_channels_and_subscriptions() -> None:
    r = run(seq(reply={"uri": "http://out/"}, channelTemplate=IMC))
    names = [f"s-kn-sequence-{i}" for i in range(3)]
    assert sorted(chans(r)) == names
    s = subs(r)
    assert sorted(s) == names
    base = "http://ingress/channels/ns/"
    assert [s[n].subscriber_uri for n in names] == ["http://a/", "http://b/", "http://c/"]
    assert [s[n].reply_uri for n in names] == [base + names[1], base + names[2], "http://out/"]
    assert [s[n].broker_key for n in names] == [f"channels/ns/{n}" for n in names]
    assert all(s[n].start_from is contract.StartFrom.EARLIEST for n in names)
    assert all(c.channel == "embedded" for c in chans(r).values())
    st = r.statuses[("Sequence", "ns", "s")]
    assert st.ready and st.address_url == base + names[0]
    k8s = st.to_k8s()
    assert [c["channel"]["name"] for c in k8s["channelStatuses"]] == names
    assert [c["subscription"]["name"] for c in k8s["subscriptionStatuses"]] == names
    assert {c["type"] for c in k8s["conditions"]} == {
        "Ready",
        "ChannelsReady",
        "SubscriptionsReady",
        "Addressable",
        "EventPoliciesReady",
    }
    # The internal objects are objects too: status, and the manifest owned by the Sequence.
    assert r.statuses[("InMemoryChannel", "ns", names[0])].ready
    owner = r.objects[("Subscription", "ns", names[0])]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Sequence", "s")


def test_a_flows_delivery_annotations_reach_its_internal_subscriptions() -> None:
    flow = seq()
    flow["metadata"]["annotations"] = {
        "kafka.eventing.knative.dev/delivery.order": "ordered",
        "kbroker.dev/max-in-flight": "7",
        "unrelated": "x",
    }
    r = run(flow)
    assert {(t.order, t.max_in_flight) for t in subs(r).values()} == {
        (contract.DeliveryOrder.ORDERED, 7)
    }
    meta = r.objects[("Subscription", "ns", "s-kn-sequence-0")]["metadata"]
    assert "unrelated" not in meta["annotations"]


def test_sequence_without_reply_drops_the_last_reply_and_step_delivery_applies() -> None:
    steps = [{"uri": "http://a/", "delivery": {"retry": 4, "backoffDelay": "PT1S"}}]
    r = run(seq(steps=steps))
    [only] = subs(r).values()
    assert only.reply_uri == ""
    assert only.delivery.retry == 4 and only.delivery.backoff_delay == 1.0


def test_parallel_wiring_is_knatives() -> None:
    r = run(
        par(
            branches=[
                {
                    "filter": {"uri": "http://f0/"},
                    "subscriber": {"uri": "http://s0/"},
                    "reply": {"uri": "http://r0/"},
                    "delivery": {"retry": 2},
                },
                {"subscriber": {"uri": "http://s1/"}},
            ],
            reply={"uri": "http://out/"},
        )
    )
    base = "http://ingress/channels/ns/"
    s = subs(r)
    assert sorted(chans(r)) == ["p-kn-parallel", "p-kn-parallel-0", "p-kn-parallel-1"]
    f0, f1 = s["p-kn-parallel-filter-0"], s["p-kn-parallel-filter-1"]
    assert (f0.broker, f0.subscriber_uri, f0.reply_uri) == (
        "p-kn-parallel",
        "http://f0/",
        base + "p-kn-parallel-0",
    )
    # Without a filter the branch channel itself is the subscriber, and there is no reply.
    assert (f1.subscriber_uri, f1.reply_uri) == (base + "p-kn-parallel-1", "")
    assert f0.delivery.retry == 0  # a branch's delivery is its subscriber's only
    b0, b1 = s["p-kn-parallel-0"], s["p-kn-parallel-1"]
    assert (b0.subscriber_uri, b0.reply_uri, b0.delivery.retry) == ("http://s0/", "http://r0/", 2)
    assert (b1.subscriber_uri, b1.reply_uri) == ("http://s1/", "http://out/")
    st = r.statuses[("Parallel", "ns", "p")]
    assert st.ready and st.address_url == base + "p-kn-parallel"
    k8s = st.to_k8s()
    assert k8s["ingressChannelStatus"]["ready"]["status"] == "True"
    branch = k8s["branchStatuses"][0]
    assert branch["filterSubscriptionStatus"]["subscription"]["name"] == "p-kn-parallel-filter-0"
    assert branch["filterChannelStatus"]["channel"]["name"] == "p-kn-parallel-0"
    assert branch["subscriberSubscriptionStatus"]["subscription"]["name"] == "p-kn-parallel-0"


@pytest.mark.parametrize(
    ("doc", "field", "text"),
    [
        (seq(steps=[]), "spec.steps", "missing field(s): spec.steps"),
        (seq(steps=[{"uri": "not-absolute"}]), "spec.steps[0].uri", "Relative URI"),
        (seq(steps=[{"ref": {"kind": "Service"}}]), "spec.steps[0].ref", "apiVersion, name"),
        (
            seq(channelTemplate={"kind": "InMemoryChannel"}),
            "spec.channelTemplate.apiVersion",
            "missing field(s)",
        ),
        (seq(reply={}), "spec.reply", "expected at least one, got none: ref, uri"),
        (par(branches=[]), "spec.branches", "missing field(s): spec.branches"),
        (
            par(branches=[{"filter": {"uri": "http://f/"}}]),
            "spec.branches.subscriber[0]",
            "missing field(s)",
        ),
    ],
)
def test_invalid_flows_are_not_ready_and_say_why(
    doc: dict[str, Any], field: str, text: str
) -> None:
    r = run(doc)
    status, message = ready(r, doc["kind"], doc["metadata"]["name"])
    assert status == "False" and text in message
    assert any(p.field == field and text in p.reason for p in r.problems), r.problems


def test_unsupported_channel_template_fails_the_channels() -> None:
    r = run(seq(channelTemplate={"apiVersion": "example.com/v1", "kind": "FancyChannel"}))
    status, message = ready(r, "Sequence", "s")
    assert status == "Unknown" and "FancyChannel" in message  # a Sequence's pending is Unknown
    assert chans(r) == {} and subs(r) == {}


def test_default_channel_template_comes_from_default_ch_webhook() -> None:
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "default-ch-webhook", "namespace": "knative-eventing"},
        "data": {
            "default-ch-config": "clusterDefault:\n  apiVersion: messaging.knative.dev/v1"
            "beta1\n  kind: KafkaChannel\n"
        },
    }
    env = compiler.Environment(
        "http://ingress", default_kafka_config=(("bootstrap.servers", "k:9"),)
    )
    r = run(seq(), cm, env=env)
    assert {c.channel for c in chans(r).values()} == {"kafka"}
    assert chans(r)["s-kn-sequence-0"].topic == "knative-messaging-kafka.ns.s-kn-sequence-0"
    assert r.statuses[("KafkaChannel", "ns", "s-kn-sequence-0")].ready


def test_kafka_channel_without_kafka_is_not_ready() -> None:
    r = run(channel("k", "KafkaChannel"))
    status, message = ready(r, "KafkaChannel", "k")
    assert status == "False" and "--kafka" in message


def test_internal_names_taken_by_someone_else_block_the_flow() -> None:
    r = run(seq(), channel("s-kn-sequence-1", "InMemoryChannel"))
    status, message = ready(r, "Sequence", "s")
    assert status == "False" and "not owned by this Sequence" in message


def test_internal_objects_created_in_kubernetes_are_taken_as_they_are() -> None:
    flow = seq(steps=[{"uri": "http://a/"}])
    flow["metadata"]["uid"] = "u-1"
    made = flows.expand(flow)
    r = run(flow, *made)
    assert r.statuses[("Sequence", "ns", "s")].ready
    assert len(subs(r)) == 1 and len(chans(r)) == 1
    assert not [p for p in r.problems if p.severity == "error"]


def test_generic_channel_and_hand_written_subscription() -> None:
    ch = channel("c", channelTemplate=IMC, delivery={"retry": 5})
    sub = subscription(
        "sub",
        "c",
        reply={
            "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}
        },
    )
    sub["metadata"]["annotations"] = {"kafka.eventing.knative.dev/delivery.order": "ordered"}
    r = run(broker(), ch, sub)
    assert r.statuses[("Channel", "ns", "c")].ready
    backing = r.statuses[("InMemoryChannel", "ns", "c")]
    assert backing.ready and backing.address_url == "http://ingress/channels/ns/c"
    k8s = r.statuses[("Channel", "ns", "c")].to_k8s()
    assert k8s["channel"]["kind"] == "InMemoryChannel"
    assert k8s["subscribers"][0]["ready"] == "True"
    entry = subs(r)["sub"]
    assert entry.reply_uri == "http://ingress/ns/default"  # a Broker ref resolves
    assert entry.delivery.retry == 5  # the channel's delivery, the Subscription having none
    assert entry.order is contract.DeliveryOrder.ORDERED
    phys = r.statuses[("Subscription", "ns", "sub")].to_k8s()["physicalSubscription"]
    assert phys == {"subscriberUri": "http://sub/", "replyUri": "http://ingress/ns/default"}


def test_subscription_rules() -> None:
    r = run(subscription("lost", "nope"))
    c = r.statuses[("Subscription", "ns", "lost")].condition("ReferencesResolved")
    assert c is not None and (c.status, c.reason) == ("Unknown", "ChannelReferenceFailed")
    no_sub = subscription("x", "c")
    del no_sub["spec"]["subscriber"]
    r = run(channel("c", "InMemoryChannel"), no_sub)
    assert "the Subscription must reference a subscriber" in ready(r, "Subscription", "x")[1]
    assert subs(r) == {}
    assert (
        "must not set the field(s)"
        in ready(
            run(channel("c", "InMemoryChannel", subscribers=[{"subscriberUri": "http://x/"}])),
            "InMemoryChannel",
            "c",
        )[1]
    )


def test_refs_to_flows_and_channels_resolve_for_triggers() -> None:
    trig = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {
            "broker": "default",
            "subscriber": {
                "ref": {"apiVersion": "flows.knative.dev/v1", "kind": "Parallel", "name": "p"}
            },
        },
    }
    r = run(broker(), trig)
    assert 'Parallel "ns/p" does not exist' in ready(r, "Trigger", "t")[1]
    r = run(broker(), trig, par(branches=[{"subscriber": {"uri": "http://s/"}}]))
    [t] = [t for t in r.contract.triggers if t.kind == contract.TRIGGER]
    assert t.subscriber_uri == "http://ingress/channels/ns/p-kn-parallel"


def test_channel_and_broker_of_one_name_do_not_collide() -> None:
    b = broker()
    r = run(b, channel("default", "InMemoryChannel"))
    keys = [x.key for x in r.contract.brokers]
    assert keys == ["ns/default", "channels/ns/default"]
    assert r.contract.broker("channels/ns/default") is not None


def test_contract_round_trips_channels_and_subscriptions() -> None:
    r = run(seq(reply={"uri": "http://out/"}))
    again = contract.Contract.from_json(r.contract.to_json())
    assert again == r.contract
    # An entry written before channels existed reads as a Broker / Trigger.
    old = contract.Contract.from_json(
        b'{"brokers":[{"namespace":"n","name":"b"}],'
        b'"triggers":[{"namespace":"n","name":"t","broker":"b"}]}'
    )
    assert old.brokers[0].kind == contract.BROKER and old.triggers[0].kind == contract.TRIGGER
    assert old.triggers[0].reply_address(old.brokers[0]) == old.brokers[0].address


@pytest.mark.parametrize(
    ("old", "new", "refused"),
    [
        (
            channel("c", channelTemplate=IMC),
            channel("c", channelTemplate={**IMC, "spec": {"x": 1}}),
            "spec.channelTemplate",
        ),
        (
            channel("c", channelTemplate=IMC),
            channel("c", channelTemplate=IMC, delivery={"retry": 1}),
            "spec.delivery",
        ),
        (subscription("s", "a"), subscription("s", "b"), "spec.channel"),
        (
            channel("k", "KafkaChannel", numPartitions=1),
            channel("k", "KafkaChannel", numPartitions=3),
            "spec.numPartitions",
        ),
        (subscription("s", "a"), subscription("s", "a", subscriber={"uri": "http://other/"}), None),
        (seq(), seq(steps=[{"uri": "http://z/"}]), None),
    ],
)
def test_immutable_fields(old: dict[str, Any], new: dict[str, Any], refused: str | None) -> None:
    why = compiler.validate_update(old, new)
    if refused is None:
        assert why == []
    else:
        assert len(why) == 1 and refused in why[0] and "Immutable fields changed" in why[0]


def test_config_folder_keeps_a_channel_whose_template_changed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(channel("c", channelTemplate=IMC)))
    source = files.FolderSource(tmp_path, ENV, lambda _: None)
    first = source.refresh()
    assert first is not None and chans(first)["c"].channel == "embedded"
    kafka = {"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel"}
    path.write_text(yaml.safe_dump(channel("c", channelTemplate=kafka)))
    os.utime(path, ns=(1, 1))
    second = source.refresh()
    assert second is not None and chans(second)["c"].channel == "embedded"
    assert any("Immutable fields changed" in p.reason for p in second.problems)


def test_generation_of_flows_follows_spec_changes(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(seq()))
    source = files.FolderSource(tmp_path, ENV, lambda _: None)
    first = source.refresh()
    assert first is not None and first.statuses[("Sequence", "ns", "s")].generation == 1
    path.write_text(yaml.safe_dump(seq(steps=[{"uri": "http://z/"}])))
    second = source.refresh()
    assert second is not None and second.statuses[("Sequence", "ns", "s")].generation == 2
    assert sorted(chans(second)) == ["s-kn-sequence-0"]  # steps removed: their objects are gone


_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_FIELDS = {
    "Sequence": ("steps", "channelTemplate", "reply"),
    "Parallel": ("branches", "channelTemplate", "reply"),
    "Channel": ("channelTemplate", "delivery", "subscribers"),
    "Subscription": ("channel", "subscriber", "reply", "delivery"),
}


@given(
    kind=st.sampled_from(sorted(_FIELDS)),
    values=st.lists(_JUNK, min_size=4, max_size=4),
    step=_JUNK,
)
@settings(max_examples=60, deadline=None)
def test_malformed_objects_get_a_status_never_an_exception(
    kind: str, values: list[Any], step: Any
) -> None:
    good = {
        "Sequence": seq(),
        "Parallel": par(branches=[{"subscriber": {"uri": "http://s/"}}]),
        "Channel": channel("c", channelTemplate=IMC),
        "Subscription": subscription("x", "c"),
    }[kind]
    spec = dict(good["spec"])
    for field, value in zip(_FIELDS[kind], values, strict=False):
        spec[field] = value
    if kind == "Sequence" and isinstance(spec.get("steps"), list):
        spec["steps"] = [*spec["steps"], step]
    doc = {**good, "spec": spec}
    r = run(doc, channel("c", "InMemoryChannel"))
    assert (kind, "ns", doc["metadata"]["name"]) in r.statuses
    contract.Contract.from_json(r.contract.to_json())
