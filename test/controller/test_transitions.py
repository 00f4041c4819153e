"""controller/transitions: a condition's lastTransitionTime moves only when its status does,
and survives a restart (a new ConditionTimes on the same file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kbroker.controller import compiler, status, transitions

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KEY = ("Trigger", "default", "t")


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t

    def tick(self) -> None:
        self.t += timedelta(seconds=10)


def trigger(subscriber: str = status.TRUE) -> status.ObjectStatus:
    given = {
        "SubscriberResolved": status.Condition("SubscriberResolved", subscriber, "", ""),
        **{t: status.true(t) for t in status.TRIGGER_CONDITIONS if t != "SubscriberResolved"},
    }
    return status.ObjectStatus(
        "Trigger", "default", "t", 1, status.with_ready(status.TRIGGER_CONDITIONS, given)
    )


def times(ct: transitions.ConditionTimes, key: compiler.Key = KEY) -> dict[str, str]:
    doc = trigger().to_k8s(now=datetime(2030, 1, 1, tzinfo=UTC), previous=ct.previous(key))
    return {c["type"]: c["lastTransitionTime"] for c in doc["conditions"]}


def at(t: datetime) -> str:
    return status.rfc3339(t)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_unchanged_conditions_keep_their_time(tmp_path: Path, clock: Clock) -> None:
    ct = transitions.ConditionTimes(tmp_path / "c.json", clock)
    ct.observe({KEY: trigger()})
    clock.tick()
    ct.observe({KEY: trigger()})
    assert set(times(ct).values()) == {at(T0)}


def test_a_changed_condition_gets_a_new_time_the_others_keep_theirs(
    tmp_path: Path, clock: Clock
) -> None:
    ct = transitions.ConditionTimes(tmp_path / "c.json", clock)
    ct.observe({KEY: trigger()})
    clock.tick()
    ct.observe({KEY: trigger(status.FALSE)})
    got = ct.previous(KEY)["conditions"]
    changed = {c["type"]: c["lastTransitionTime"] for c in got if c["lastTransitionTime"] != at(T0)}
    assert changed == {"Ready": at(clock.t), "SubscriberResolved": at(clock.t)}


@pytest.mark.parametrize("write", [True, False], ids=["persisted", "memory-only"])
def test_times_survive_a_restart_only_when_written(
    tmp_path: Path, clock: Clock, write: bool
) -> None:
    path = tmp_path / "data" / "c.json" if write else None
    transitions.ConditionTimes(path, clock).observe({KEY: trigger()})
    clock.tick()
    again = transitions.ConditionTimes(path, clock)
    again.observe({KEY: trigger()})
    assert set(times(again).values()) == {at(T0) if write else at(clock.t)}


def test_a_deleted_object_is_forgotten(tmp_path: Path, clock: Clock) -> None:
    ct = transitions.ConditionTimes(tmp_path / "c.json", clock)
    ct.observe({KEY: trigger()})
    clock.tick()
    ct.observe({})
    assert ct.previous(KEY) == {"conditions": []}
    ct.observe({KEY: trigger()})
    assert set(times(ct).values()) == {at(clock.t)}


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'{"version": 1, "objects": {"x": 3}}', b'{"version": 99}']
)
def test_an_unreadable_file_starts_from_now(tmp_path: Path, clock: Clock, content: bytes) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(content)
    ct = transitions.ConditionTimes(path, clock)
    ct.observe({KEY: trigger()})
    assert set(times(ct).values()) == {at(T0)}
    assert transitions.ConditionTimes(path, clock).previous(KEY) == ct.previous(KEY)


def test_nothing_is_written_when_nothing_changed(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "c.json"
    ct = transitions.ConditionTimes(path, clock)
    ct.observe({KEY: trigger()})
    path.unlink()
    clock.tick()
    ct.observe({KEY: trigger()})
    assert not path.exists()
