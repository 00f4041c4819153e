"""The cluster controller's decisions, table-driven, no server: immutable fields, status, refs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kbroker.controller import status
from kbroker.controller.kube import decisions

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CLASS = "eventing.knative.dev/broker.class"


def broker(cls: str | None = None, config: str | None = None, **ann: str) -> dict[str, Any]:
    annotations = dict(ann)
    if cls:
        annotations[CLASS] = cls
    spec: dict[str, Any] = {}
    if config:
        spec["config"] = {"apiVersion": "v1", "kind": "ConfigMap", "name": config}
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "b", "namespace": "ns", "annotations": annotations},
        "spec": spec,
    }


def accepted_of(b: dict[str, Any]) -> dict[str, Any]:
    """Round trip through the status, as the controller stores it."""
    st = decisions.desired_status(
        ready_broker(), decisions.Overrides(accepted=decisions.accepted_record(b)), None, NOW
    )
    assert decisions.accepted_record({"status": st}) == decisions.accepted_record(
        b
    )  # kept once there
    return decisions.recorded({"status": st}) or {}


@pytest.mark.parametrize(
    ("first", "then", "problems"),
    [
        (broker(), broker(), []),
        (broker("Kafka", "c1"), broker("Kafka", "c1"), []),
        (broker("Kafka", "c1"), broker("Kafka", "c2"), ["spec.config"]),
        (broker(None, "c1"), broker(None, None), ["spec.config"]),
        (broker("Kafka"), broker("MTChannelBasedBroker"), ["broker.class"]),
        # No class then the default class spelled out: the same class, so allowed.
        (broker(None), broker("MTChannelBasedBroker"), []),
    ],
    ids=["unchanged", "same-config", "config-changed", "config-removed", "class", "default-class"],
)
def test_served_broker_keeps_the_accepted_version(
    first: dict[str, Any], then: dict[str, Any], problems: list[str]
) -> None:
    served, found = decisions.served_broker(then, accepted_of(first), None, "MTChannelBasedBroker")
    assert len(found) == len(problems)
    for want, got in zip(problems, found, strict=True):
        assert want in got and got.startswith("Immutable fields changed")
    if problems:
        assert decisions.accepted_fields(served) == decisions.accepted_fields(first)
    else:
        assert served is then


def test_served_broker_without_a_record_accepts_as_is() -> None:
    b = broker("Kafka", "c")
    assert decisions.served_broker(b, None, None, "X") == (b, [])
    assert (
        decisions.recorded({"status": {"annotations": {decisions.ACCEPTED_ANNOTATION: "{"}}})
        is None
    )


def test_served_trigger_reverts_spec_broker() -> None:
    t = {"kind": "Trigger", "metadata": {"name": "t"}, "spec": {"broker": "new"}}
    served, problems = decisions.served_trigger(t, "old")
    assert served["spec"]["broker"] == "old"
    assert problems == ["Immutable fields changed: spec.broker"]
    assert decisions.served_trigger(t, "new") == (t, [])
    assert decisions.served_trigger(t, None) == (t, [])


def ready_broker() -> status.ObjectStatus:
    deps = {t: status.true(t) for t in status.BROKER_CONDITIONS}
    return status.ObjectStatus(
        "Broker", "ns", "b", 3, status.with_ready(status.BROKER_CONDITIONS, deps), "http://x/ns/b"
    )


def ready_of(st: status.ObjectStatus) -> tuple[str, str]:
    c = st.conditions[0]
    return c.status, c.reason


@pytest.mark.parametrize(
    ("overrides", "ready"),
    [
        (decisions.Overrides(), ("True", "")),
        (decisions.Overrides(waiting_for=7), ("Unknown", decisions.REASON_DATA_PLANE)),
        (decisions.Overrides(storage_error="disk"), ("False", decisions.REASON_STORAGE)),
        (decisions.Overrides(violations=("Immutable",)), ("False", decisions.REASON_IMMUTABLE)),
        (
            decisions.Overrides(violations=("Immutable",), waiting_for=7),
            ("False", decisions.REASON_IMMUTABLE),
        ),
    ],
    ids=["plain", "data-plane-behind", "storage", "immutable", "immutable-wins"],
)
def test_effective_status(overrides: decisions.Overrides, ready: tuple[str, str]) -> None:
    st = decisions.effective(ready_broker(), overrides)
    assert ready_of(st) == ready
    channel = st.condition("TriggerChannelReady")
    assert channel is not None
    assert channel.status == ("False" if overrides.storage_error else "True")


def test_waiting_never_makes_a_failing_object_look_better() -> None:
    deps = {t: status.true(t) for t in status.BROKER_CONDITIONS}
    deps["FilterReady"] = status.false("FilterReady", "InvalidDelivery")
    st = status.ObjectStatus(
        "Broker", "ns", "b", 1, status.with_ready(status.BROKER_CONDITIONS, deps)
    )
    assert ready_of(decisions.effective(st, decisions.Overrides(waiting_for=2))) == (
        "False",
        "InvalidDelivery",
    )


def test_status_patch_is_none_when_equal_and_deletes_removed_fields() -> None:
    desired = decisions.desired_status(ready_broker(), decisions.Overrides(), None, NOW)
    assert decisions.status_patch(desired, desired) is None
    again = decisions.desired_status(
        ready_broker(), decisions.Overrides(), desired, NOW.replace(year=2027)
    )
    assert decisions.status_patch(again, desired) is None  # lastTransitionTime kept: no write
    patch = decisions.status_patch({"observedGeneration": 3}, {**desired, "observedGeneration": 2})
    assert patch is not None
    assert patch["status"]["observedGeneration"] == 3
    assert patch["status"]["address"] is None and patch["status"]["conditions"] is None


def test_refs_and_keys() -> None:
    objs: list[dict[str, Any]] = [
        {
            "metadata": {"namespace": "a"},
            "spec": {
                "subscriber": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "s"}},
                "delivery": {
                    "deadLetterSink": {"ref": {"kind": "K", "name": "d", "namespace": "z"}}
                },
            },
        },
        {"metadata": {"namespace": "b"}, "spec": {"subscriber": {"uri": "http://x/"}}},
        {"metadata": {}, "spec": "not a mapping"},
    ]
    found = [decisions.ref_key(ref, ns) for ref, ns in decisions.refs(objs)]
    assert found == [("v1", "Service", "a", "s"), ("", "K", "z", "d")]


@pytest.mark.parametrize(
    ("ports", "url"),
    [
        ([], "http://s.ns.svc.cluster.local/"),
        ([{"port": 80}], "http://s.ns.svc.cluster.local/"),
        ([{"port": 8080}, {"port": 80}], "http://s.ns.svc.cluster.local:8080/"),
    ],
    ids=["no-ports", "port-80", "first-port"],
)
def test_service_url(ports: list[dict[str, int]], url: str) -> None:
    assert decisions.service_url("s", "ns", {"spec": {"ports": ports}}) == url


@pytest.mark.parametrize(
    ("kind", "plural"),
    [
        ("Thing", "things"),
        ("Policy", "policies"),
        ("Gateway", "gateways"),
        ("Ingress", "ingresses"),
    ],
)
def test_plural_guess(kind: str, plural: str) -> None:
    assert decisions.plural_guess(kind) == plural
