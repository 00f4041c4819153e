"""kbroker/status_api: objects shown as written, and a Broker whose storage failed shown not Ready.
GET /status as a whole (and `kbroker get`) is exercised on the real process in
test/e2e/test_filters_lifecycle.py."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from kbroker.controller import files, status
from kbroker.core import contract
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.contract_source import ContractHolder

from kbroker import status_api

TRIGGER: dict[str, Any] = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Trigger",
    "metadata": {"name": "t", "labels": {"a": "b"}, "annotations": {"x": "y"}},
    "spec": {"broker": "default", "subscriber": {"uri": "http://s/"}, "filters": [{"cesql": "x"}]},
}

AS_WRITTEN: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "everything written is kept; namespace and generation filled in",
        TRIGGER,
        {
            **TRIGGER,
            "metadata": {**TRIGGER["metadata"], "namespace": "default", "generation": 3},
        },
    ),
    (
        "no spec shows an empty one",
        {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "t"}},
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "t", "namespace": "default", "generation": 3},
            "spec": {},
        },
    ),
    (
        "a status written in the YAML is not shown (ours is), unknown fields are",
        {**TRIGGER, "status": {"bogus": 1}, "extra": [1]},
        {
            **TRIGGER,
            "metadata": {**TRIGGER["metadata"], "namespace": "default", "generation": 3},
            "extra": [1],
        },
    ),
    (
        "YAML dates become the strings kubectl would show",
        {**TRIGGER, "spec": {"since": datetime.date(2026, 1, 2)}},
        {
            **TRIGGER,
            "metadata": {**TRIGGER["metadata"], "namespace": "default", "generation": 3},
            "spec": {"since": "2026-01-02"},
        },
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in AS_WRITTEN], ids=[c[0] for c in AS_WRITTEN]
)
def test_as_written(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    shown = status_api.as_written(raw, raw["kind"], "default", "t", 3)
    assert shown == expected
    assert list(shown)[:4] == ["apiVersion", "kind", "metadata", "spec"]
    shown["spec"]["changed"] = True  # a copy: what is shown never reaches the compiler's object
    assert "changed" not in raw.get("spec", {})


def object_status(kind: str) -> status.ObjectStatus:
    order = status.BROKER_CONDITIONS if kind == "Broker" else status.TRIGGER_CONDITIONS
    return status.ObjectStatus(
        kind, "default", "b", 1, status.with_ready(order, {t: status.true(t) for t in order})
    )


@pytest.mark.parametrize(
    ("kind", "errors", "failed"),
    [
        ("Broker", {"default/b": "disk full"}, {"Ready", "TriggerChannelReady"}),
        ("Broker", {"default/other": "disk full"}, set()),
        ("Trigger", {"default/b": "disk full"}, set()),
    ],
)
def test_storage_failure_makes_the_broker_not_ready(
    kind: str, errors: dict[str, str], failed: set[str]
) -> None:
    shown = status_api.effective(object_status(kind), errors)
    assert {c.type for c in shown.conditions if c.status == status.FALSE} == failed
    for c in shown.conditions:
        if c.type in failed:
            assert (c.reason, c.message) == ("StorageNotReady", "disk full")


class _Folder:
    def __init__(self, health: files.Health) -> None:
        self.health = health


class _Retirement:
    pending = ("default/gone",)


class _Source:
    """Only what `config_status` reads (the rest of StatusSource is not consulted)."""

    def __init__(self, health: files.Health) -> None:
        self.folder = _Folder(health)
        self.retirement = _Retirement()


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        (
            files.Health(),
            {"readable": True, "errors": [], "removedBrokersKept": ["default/gone"]},
        ),
        (
            files.Health(("/cfg: cannot read: Too many open files (errno 24)",), 1_800_000_000.0),
            {
                "readable": False,
                "errors": ["/cfg: cannot read: Too many open files (errno 24)"],
                "since": "2027-01-15T08:00:00Z",
                "removedBrokersKept": ["default/gone"],
            },
        ),
    ],
    ids=["readable", "unreadable"],
)
def test_config_status(health: files.Health, expected: dict[str, Any]) -> None:
    assert status_api.config_status(_Source(health)) == expected  # type: ignore[arg-type]


class _Storage:
    """What `storage_problems` reads: creation errors, the channels, the current contract."""

    def __init__(self, errors: dict[str, str], channels: dict[str, Any]) -> None:
        self.storage_errors = errors
        self.channels = channels
        brokers = (
            contract.Broker(namespace="default", name="b", uid="1", address="http://x/"),
            contract.Broker(namespace="default", name="c", uid="2", address="http://x/"),
        )
        self.holder = ContractHolder(contract.Contract(1, brokers))


class _Silent:
    """A channel without `problem` (as Kafka): it reports nothing and is not asked."""

    name = "embedded"


@pytest.mark.parametrize(
    ("errors", "live", "expected"),
    [
        ({}, {}, {}),
        ({"default/b": "cannot create"}, {}, {"default/b": "cannot create"}),
        ({}, {"default/c": "log damaged"}, {"default/c": "log damaged"}),
        (
            {"default/c": "cannot create"},
            {"default/c": "log damaged"},
            {"default/c": "log damaged"},
        ),
    ],
    ids=["none", "creation error", "found while running", "the channel's word is newer"],
)
def test_storage_problems_include_what_the_channel_finds_later(
    errors: dict[str, str], live: dict[str, str], expected: dict[str, str]
) -> None:
    channel = MemoryChannel()
    channel.problems = {contract.BrokerKey(k): v for k, v in live.items()}
    src = _Storage(errors, {"embedded": channel})
    assert status_api.storage_problems(src) == expected  # type: ignore[arg-type]
    # A channel that does not report problems contributes none.
    quiet = _Storage(errors, {"embedded": _Silent()})
    assert status_api.storage_problems(quiet) == errors  # type: ignore[arg-type]
