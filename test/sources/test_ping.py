"""sources/ping: the event of a tick, and one event per tick across restarts (fake clock)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

import pytest
from kbroker.core import contract, events
from kbroker.sources.ping import PingRunner, event_for
from kbroker.sources.ping_state import TickRecord

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()


def source(**kw: object) -> contract.PingSource:
    base: dict[str, object] = {
        "namespace": "ns",
        "name": "p",
        "uid": "u1",
        "schedule": "*/2 * * * * *",
        "sink_uri": "http://sink.test/",
    }
    base.update(kw)
    return contract.PingSource(**base)  # type: ignore[arg-type]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Recorder:
    def __init__(self) -> None:
        self.sent: list[events.CloudEvent] = []

    async def emit(self, ping: contract.PingSource, event: events.CloudEvent) -> bool:
        self.sent.append(event)
        return True

    async def close(self) -> None:
        pass

    def times(self) -> list[str]:
        return [str(e.attributes["time"]) for e in self.sent]


def test_event_has_knatives_attributes() -> None:
    p = source(content_type="text/plain", data_base64="aGVsbG8=", extensions=(("team", "a"),))
    tick = dt.datetime(2026, 3, 1, 12, 0, 2, tzinfo=dt.UTC)
    ev = event_for(p, tick)
    assert ev.attributes == {
        "specversion": "1.0",
        "id": str(
            uuid.uuid5(
                uuid.NAMESPACE_URL, "/apis/v1/namespaces/ns/pingsources/p#2026-03-01T12:00:02Z"
            )
        ),
        "source": "/apis/v1/namespaces/ns/pingsources/p",
        "type": "dev.knative.sources.ping",
        "time": "2026-03-01T12:00:02Z",
        "datacontenttype": "text/plain",
        "team": "a",
    }
    assert ev.data == b"hello"
    assert event_for(p, tick).id == ev.id != event_for(p, tick + dt.timedelta(seconds=2)).id


def test_no_data_means_no_body_and_no_content_type() -> None:
    ev = event_for(source(content_type="text/plain"), dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert ev.data is None and "datacontenttype" not in ev.attributes


class Harness:
    def __init__(self, tmp: Path, sources: tuple[contract.PingSource, ...], t: float) -> None:
        self.contract = contract.Contract(generation=1, sources=sources)
        self.clock = Clock(t)
        self.out = Recorder()
        self.record = TickRecord(tmp)
        self.runner = self.new_runner()

    def new_runner(self) -> PingRunner:
        return PingRunner(lambda: self.contract, self.record, self.out, clock=self.clock)

    async def at(self, t: float) -> None:
        self.clock.t = t
        self.runner.step()
        await asyncio.sleep(0)
        await self.runner.close()


async def test_one_event_per_tick_and_none_before_creation(tmp_path: Path) -> None:
    h = Harness(tmp_path, (source(),), T0 + 0.5)
    for dt_ in (0.5, 1.0, 2.0, 2.0, 2.5, 4.1, 5.9, 6.0):
        await h.at(T0 + dt_)
    assert h.out.times() == [
        "2026-03-01T12:00:02Z",
        "2026-03-01T12:00:04Z",
        "2026-03-01T12:00:06Z",
    ]


async def test_a_busy_loop_delays_a_tick_but_does_not_skip_it(tmp_path: Path) -> None:
    h = Harness(tmp_path, (source(),), T0)
    await h.at(T0)
    await h.at(T0 + 5.5)  # the loop was blocked from 12:00:00 to 12:00:05.5
    assert h.out.times() == ["2026-03-01T12:00:02Z", "2026-03-01T12:00:04Z"]


async def test_restart_neither_repeats_nor_catches_up(tmp_path: Path) -> None:
    h = Harness(tmp_path, (source(),), T0)
    await h.at(T0)
    await h.at(T0 + 2.0)
    assert h.out.times() == ["2026-03-01T12:00:02Z"]
    h.runner = h.new_runner()  # a restart: memory gone, the record stays
    await h.at(T0 + 2.3)  # same tick again: already recorded
    assert len(h.out.sent) == 1
    h.runner = h.new_runner()
    await h.at(T0 + 10.5)  # down over 4, 6, 8; 10 is half a second late: still fired
    assert h.out.times() == ["2026-03-01T12:00:02Z", "2026-03-01T12:00:10Z"]


async def test_tick_is_recorded_before_it_is_sent(tmp_path: Path) -> None:
    class Crash:
        async def emit(self, ping: contract.PingSource, event: events.CloudEvent) -> bool:
            raise RuntimeError("killed between record and send")

        async def close(self) -> None:
            pass

    h = Harness(tmp_path, (source(),), T0)
    h.runner = PingRunner(lambda: h.contract, h.record, Crash(), clock=h.clock)
    await h.at(T0)
    await h.at(T0 + 2.0)
    assert h.record.load("ns", "p", "u1") == dt.datetime(2026, 3, 1, 12, 0, 2, tzinfo=dt.UTC)
    h.runner = h.new_runner()
    await h.at(T0 + 2.2)
    assert h.out.sent == []  # lost, never doubled


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (10.0, ["12:00:22", "12:00:24", "12:00:26", "12:00:28", "12:00:30", "12:00:32"]),
        (0.0, ["12:00:32"]),
    ],
)
async def test_catch_up_replays_missed_ticks_within_the_window(
    tmp_path: Path, window: float, expected: list[str]
) -> None:
    h = Harness(tmp_path, (source(catch_up=window),), T0)
    await h.at(T0)
    await h.at(T0 + 2.0)
    h.out.sent.clear()
    h.runner = h.new_runner()
    await h.at(T0 + 32.0)  # down since 12:00:02; a 10 s window reaches back to 12:00:22
    assert [t[11:19] for t in h.out.times()] == expected


async def test_recreated_source_starts_fresh_and_removed_source_forgets(tmp_path: Path) -> None:
    h = Harness(tmp_path, (source(catch_up=3600.0),), T0)
    await h.at(T0)
    await h.at(T0 + 2.0)
    h.contract = contract.Contract(generation=2)
    await h.at(T0 + 3.0)
    assert h.record.load("ns", "p", "u1") is None
    h.contract = contract.Contract(generation=3, sources=(source(uid="u2", catch_up=3600.0),))
    h.out.sent.clear()
    await h.at(T0 + 20.0)  # first sight of u2: nothing before it existed is replayed
    await h.at(T0 + 22.0)
    assert h.out.times() == ["2026-03-01T12:00:22Z"]
