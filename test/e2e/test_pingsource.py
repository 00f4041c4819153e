"""PingSource end to end: `kbroker run` fires it into a Broker, a Trigger delivers to a real sink.

Schedules use the optional seconds field (`*/2 * * * * *`, which Knative accepts too) so that no
test waits for a real minute. Restarts use kill -9 while the source is idle between two ticks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

from e2e import knative_yaml as ky
from fixtures.broker import StartBroker
from fixtures.subscriber import Sink, SinkServer

EVERY_2S = "*/2 * * * * *"


def pingsource(
    name: str, sink: dict[str, Any], annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": meta,
        "spec": {"schedule": EVERY_2S, "sink": sink, **spec},
    }


TO_BROKER = {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}


def ticks(sink: Sink) -> list[dt.datetime]:
    return [dt.datetime.fromisoformat(str(e.attributes["time"])) for e in sink.events]


async def test_pingsource_events_reach_a_trigger_and_a_uri_sink_with_knative_attributes(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    via_broker, direct = sinks.sink("via-broker"), sinks.sink("direct")
    objects = [
        ky.broker(),
        ky.trigger("t", via_broker.url, attributes={"type": "dev.knative.sources.ping"}),
        pingsource(
            "p",
            TO_BROKER,
            contentType="application/json",
            data='{"hello": "world"}',
            ceOverrides={"extensions": {"team": "a"}},
        ),
        pingsource("q", {"uri": direct.url}, contentType="text/plain", dataBase64="aGk="),
    ]
    proc = await start_broker({"o.yaml": ky.dump(*objects)})
    await proc.wait_ready_object("PingSource", "p")
    st = await proc.object_status("PingSource", "p")
    assert st is not None and st["status"]["sinkUri"].endswith("/default/default")
    assert st["status"]["ceAttributes"] == [
        {"type": "dev.knative.sources.ping", "source": "/apis/v1/namespaces/default/pingsources/p"}
    ]
    await via_broker.wait_for(2, timeout=20)
    await direct.wait_for(1, timeout=20)
    ev = via_broker.events[0]
    assert ev.attributes["type"] == "dev.knative.sources.ping"
    assert ev.attributes["source"] == "/apis/v1/namespaces/default/pingsources/p"
    assert ev.attributes["team"] == "a" and ev.attributes["datacontenttype"] == "application/json"
    assert ev.data == b'{"hello": "world"}'
    first, second = ticks(via_broker)[:2]
    assert first.microsecond == 0 and first.second % 2 == 0
    assert second - first == dt.timedelta(seconds=2)
    q = direct.events[0]
    assert q.attributes["source"] == "/apis/v1/namespaces/default/pingsources/q"
    assert q.data == b"hi" and q.attributes["datacontenttype"] == "text/plain"


async def _idle_kill_restart(proc: Any, sink: Sink, seen: int, down: float) -> None:
    """Kill -9 right after the sink saw its `seen`th event (between ticks), stay down, restart."""
    await sink.wait_for(seen, timeout=30)
    proc.kill()
    await asyncio.sleep(down)
    await proc.start()


async def test_kill_9_neither_repeats_a_tick_nor_replays_missed_ones(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    """The URI sink sees what the source sent; the Trigger's sink may also see the broker's own
    at-least-once redeliveries after a kill, which carry the tick's id, so they are dedupable."""
    direct, via_broker = sinks.sink("direct"), sinks.sink("via-broker")
    objects = [
        ky.broker(),
        ky.trigger("t", via_broker.url),
        pingsource("p", TO_BROKER),
        pingsource("q", {"uri": direct.url}),
    ]
    proc = await start_broker({"o.yaml": ky.dump(*objects)})
    await _idle_kill_restart(proc, direct, 2, down=0.0)  # back at once: around the next tick
    await _idle_kill_restart(proc, direct, 3, down=5.0)  # down over at least two ticks
    await direct.wait_for(5, timeout=30)
    times = ticks(direct)
    assert len(set(direct.ids())) == len(direct.ids()), f"a tick was sent twice: {times}"
    assert len(set(times)) == len(times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) >= dt.timedelta(seconds=6), f"missed ticks were replayed: {times}"
    by_tick: dict[dt.datetime, set[str]] = {}
    for t, ev_id in zip(ticks(via_broker), via_broker.ids(), strict=True):
        by_tick.setdefault(t, set()).add(ev_id)
    assert all(len(ids) == 1 for ids in by_tick.values()), by_tick


async def test_catch_up_annotation_replays_the_ticks_missed_while_down(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    sink = sinks.sink("s")
    ps = pingsource("p", {"uri": sink.url}, annotations={"kbroker.dev/catch-up": "PT1H"})
    proc = await start_broker({"o.yaml": ky.dump(ps)})
    await _idle_kill_restart(proc, sink, 1, down=5.0)
    await sink.wait_for(5, timeout=30)
    times = ticks(sink)
    assert len(set(times)) == len(times), times
    assert times == sorted(times), "replayed ticks arrive oldest first"
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert gaps == {dt.timedelta(seconds=2)}, f"a tick is missing or doubled: {times}"
