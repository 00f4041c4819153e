"""The workflow kinds' cluster plumbing without a server: absent CRDs, and the refs prefetched.

An API server without the KafkaChannel CRD answers 404 for its list; the controller must still
reconcile everything else (the real-server behaviour of the other kinds is in test_flows_kube.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from kbroker.controller import compiler, status
from kbroker.controller.kube import decisions, flows
from kbroker.controller.kube.api import KubeError, Obj
from kbroker.controller.kube.reconciler import KubeSettings
from kbroker.controller.kube.watch import Informer
from kbroker.core import contract


def obj(name: str, rv: str) -> Obj:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv}}


class Scripted:
    """GETs answered by path (404 for unknown paths); watches stay idle."""

    def __init__(self, answers: Mapping[str, Callable[[], Obj]]) -> None:
        self.answers = dict(answers)
        self.calls: list[str] = []

    async def request(self, method: str, path: str, **_: Any) -> Obj:
        self.calls.append(path)
        if path not in self.answers:
            raise KubeError(404, "the server could not find the requested resource")
        return self.answers[path]()

    async def watch(self, path: str, version: str, timeout: int) -> AsyncIterator[Obj]:
        await asyncio.Event().wait()
        yield {}

    async def close(self) -> None:
        return None


async def test_an_optional_kind_without_its_crd_is_synced_and_empty_until_it_appears() -> None:
    listing: dict[str, Any] = {"metadata": {"resourceVersion": "5"}, "items": [obj("k", "4")]}
    answers: list[dict[str, Any] | KubeError] = [KubeError(404, "no such resource"), listing]

    def answer() -> dict[str, Any]:
        found = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(found, KubeError):
            raise found
        return found

    client = Scripted({flows.KAFKACHANNELS.path(): answer})
    changes: list[Any] = []
    informer = Informer(
        client, flows.KAFKACHANNELS, changes.append, backoff=(0.01, 0.05), optional=True
    )
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 2)
        assert informer.absent and informer.items == {}
        # The CRD gets installed: the next list finds its objects and reports a change.
        async with asyncio.timeout(2):
            while not informer.items:
                await asyncio.sleep(0.01)
        assert list(informer.items) == [("ns", "k")]
        assert not informer.absent and changes[-1] is None
    finally:
        task.cancel()


async def test_a_required_kind_without_its_crd_never_counts_as_synced() -> None:
    client = Scripted({})  # every GET is a 404
    informer = Informer(client, flows.SEQUENCES, lambda _: None, backoff=(0.01, 0.02))
    task = asyncio.create_task(informer.run())
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(informer.synced.wait(), 0.2)
        assert len(client.calls) >= 2  # kept retrying
    finally:
        task.cancel()


def ref(kind: str, name: str) -> dict[str, str]:
    return {"apiVersion": "serving.knative.dev/v1", "kind": kind, "name": name}


def test_every_destination_a_workflow_names_is_prefetched() -> None:
    sequence = {
        "kind": "Sequence",
        "metadata": {"namespace": "shop", "name": "s"},
        "spec": {
            "steps": [
                {"ref": ref("Service", "first")},
                {"uri": "http://x/", "delivery": {"deadLetterSink": {"ref": ref("Service", "dl")}}},
            ],
            "reply": {"ref": {**ref("Broker", "default"), "namespace": "other"}},
        },
    }
    parallel = {
        "kind": "Parallel",
        "metadata": {"name": "p"},
        "spec": {
            "branches": [
                {
                    "filter": {"ref": ref("Service", "f")},
                    "subscriber": {"ref": ref("Service", "s")},
                },
                {"subscriber": {"uri": "http://y/"}, "reply": {"ref": ref("Service", "r")}},
                "not a branch",
            ],
        },
    }
    subscription = {
        "kind": "Subscription",
        "metadata": {"namespace": "shop", "name": "sub"},
        "spec": {
            "channel": {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel", "name": "c"},
            "subscriber": {"ref": ref("Service", "sink")},
            "delivery": {"deadLetterSink": {"uri": "http://dls/"}},
        },
    }
    names = {
        (r["kind"], r["name"], ns)
        for o in (sequence, parallel, subscription)
        for r, ns in flows.refs(o)
    }
    assert names == {
        ("Service", "first", "shop"),
        ("Service", "dl", "shop"),
        ("Broker", "default", "shop"),  # the resolver honours the ref's own namespace
        ("Service", "f", "default"),
        ("Service", "s", "default"),
        ("Service", "r", "default"),
        ("Channel", "c", "shop"),
        ("Service", "sink", "shop"),
    }
    assert flows.refs({"kind": "Sequence", "spec": "garbage"}) == []


def channel(ns: str, name: str) -> contract.Broker:
    return contract.Broker(
        namespace=ns,
        name=name,
        uid=name,
        generation=1,
        address=f"http://ingress/channels/{ns}/{name}",
        channel="embedded",
        topic=f"knative-channel-{ns}-{name}",
        kind=contract.CHANNEL,
    )


def test_channel_storage_is_collected_only_when_nothing_could_own_it() -> None:
    stored = [
        channel("ns", "seq-kn-sequence-0"),  # its Sequence is gone
        channel("ns", "seq-kn-sequence-1"),
        channel("ns", "kept-kn-sequence-0"),  # its Sequence exists, even if invalid now
        channel("ns", "par-kn-parallel"),  # Parallel gone
        channel("ns", "live-kn-parallel-3"),  # Parallel exists
        channel("ns", "imc"),  # its InMemoryChannel exists
        channel("other", "imc"),  # same name, another namespace: gone
        channel("ns", "served"),  # still in the contract
        dataclasses.replace(channel("ns", "b"), kind=contract.BROKER),  # Brokers: finalizers
    ]
    present: dict[str, dict[tuple[str, str], Any]] = {
        "Sequence": {("ns", "kept"): {}},
        "Parallel": {("ns", "live"): {}},
        "InMemoryChannel": {("ns", "imc"): {}},
        "Subscription": {("ns", "seq-kn-sequence-1"): {}},  # not a channel: owns nothing
    }
    current = contract.Contract(generation=3, brokers=(channel("ns", "served"),))
    gone = flows.orphaned(stored, current, present)
    assert sorted(b.key for b in gone) == [
        "channels/ns/par-kn-parallel",
        "channels/ns/seq-kn-sequence-0",
        "channels/ns/seq-kn-sequence-1",
        "channels/other/imc",
    ]


def test_a_flow_reports_the_storage_failures_of_its_own_channels() -> None:
    errors = {
        "channels/ns/s-kn-sequence-1": "Kafka unreachable",
        "channels/ns/p-kn-parallel-0": "disk full",
        "channels/ns/imc": "disk full",
        "ns/s": "a Broker's, not a channel's",
        "channels/other/s-kn-sequence-0": "another namespace",
    }
    assert flows.storage_error("Sequence", "ns", "s", errors) == (
        "channel s-kn-sequence-1: Kafka unreachable"
    )
    assert (
        flows.storage_error("Parallel", "ns", "p", errors) == "channel p-kn-parallel-0: disk full"
    )
    assert flows.storage_error("InMemoryChannel", "ns", "imc", errors) == "channel imc: disk full"
    assert flows.storage_error("Sequence", "ns", "imc", errors) is None
    assert flows.storage_error("Subscription", "ns", "imc", errors) is None
    assert flows.storage_error("Sequence", "ns", "s", {}) is None


def test_a_storage_failure_turns_a_ready_flow_not_ready() -> None:
    ok = status.ObjectStatus(
        "Sequence", "ns", "s", 1, status.with_ready(("ChannelsReady",), {}), "http://x"
    )
    ok = dataclasses.replace(ok, conditions=(status.true("Ready"), status.true("ChannelsReady")))
    failed = decisions.effective(ok, decisions.Overrides(storage_error="channel s-0: no disk"))
    ready = failed.condition("Ready")
    assert ready is not None and ready.status == "False"
    assert (ready.reason, ready.message) == (decisions.REASON_STORAGE, "channel s-0: no disk")
    assert decisions.effective(ok, decisions.Overrides()).ready


def test_in_cluster_mode_under_kafka_inmemorychannels_are_stored_in_kafka() -> None:
    # Ingress and filter are separate pods: an embedded log would be written and never read.
    env = KubeSettings(kafka_bootstrap="kafka:9092").environment()
    assert env.channel_backends == {"InMemoryChannel": "kafka"}
    assert KubeSettings().environment().channel_backends == {}


def test_the_override_reaches_the_contract_for_plain_and_templated_channels() -> None:
    env = KubeSettings(kafka_bootstrap="kafka:9092", ingress_url="http://in").environment()
    imc = {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "InMemoryChannel",
        "metadata": {"namespace": "ns", "name": "imc"},
    }
    generic = {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Channel",
        "metadata": {"namespace": "ns", "name": "ch"},
        "spec": {"channelTemplate": {"apiVersion": imc["apiVersion"], "kind": "InMemoryChannel"}},
    }
    result = compiler.compile(
        [compiler.SourcedObject(o, "kubernetes") for o in (imc, generic)], env
    )
    entries = {b.name: b for b in result.contract.brokers}
    assert {n: (b.channel, b.topic) for n, b in entries.items()} == {
        "imc": ("kafka", "knative-messaging-kafka.ns.imc"),
        "ch": ("kafka", "knative-messaging-kafka.ns.ch"),
    }
    assert dict(entries["imc"].channel_config)["bootstrap.servers"] == "kafka:9092"


def sub(ns: str, name: str, kind: str = contract.SUBSCRIPTION) -> contract.Trigger:
    return contract.Trigger(
        namespace=ns,
        name=name,
        uid=contract.TriggerUid(name),
        broker="c",
        subscriber_uri="http://s/",
        kind=kind,
    )


def test_ready_waits_for_exactly_the_entries_an_object_stands_for() -> None:
    c = contract.Contract(
        generation=4,
        brokers=(
            channel("ns", "s-kn-sequence-0"),
            channel("ns", "s-kn-sequence-1"),
            channel("ns", "s-2-kn-sequence-0"),  # another Sequence, named s-2
            channel("ns", "p-kn-parallel"),
            channel("ns", "p-kn-parallel-0"),
            channel("other", "s-kn-sequence-0"),
            channel("ns", "imc"),
            dataclasses.replace(channel("ns", "imc"), kind=contract.BROKER),  # a Broker "imc"
        ),
        triggers=(
            sub("ns", "s-kn-sequence-0"),
            sub("ns", "p-kn-parallel-filter-0"),
            sub("ns", "p-kn-parallel-0"),
            sub("ns", "mine"),
            sub("ns", "imc", kind=contract.TRIGGER),  # a Trigger "imc"
        ),
    )

    def names(kind: str, name: str) -> list[tuple[str, str]]:
        found = flows.entries_of(kind, "ns", name, c)
        return [(type(e).__name__, e.name) for e in found]  # type: ignore[attr-defined]

    assert names("Sequence", "s") == [
        ("Broker", "s-kn-sequence-0"),
        ("Broker", "s-kn-sequence-1"),
        ("Trigger", "s-kn-sequence-0"),
    ]
    assert names("Parallel", "p") == [
        ("Broker", "p-kn-parallel"),
        ("Broker", "p-kn-parallel-0"),
        ("Trigger", "p-kn-parallel-filter-0"),
        ("Trigger", "p-kn-parallel-0"),
    ]
    assert names("InMemoryChannel", "imc") == [("Broker", "imc")]
    assert names("Subscription", "mine") == [("Trigger", "mine")]
    assert names("Subscription", "imc") == []
