"""The dispatcher records each event's outcome and attempts against real HTTP subscribers."""

from __future__ import annotations

from fixtures.subscriber import SinkServer
from kbroker.core import events
from kbroker.core.contract import Broker, Contract, DeliverySpec, Trigger, TriggerUid
from kbroker.core.contract_source import ContractHolder
from kbroker.core.outcomes import Verdict
from kbroker.core.settings import DispatcherSettings
from kbroker.filter.dispatch import Dispatcher
from kbroker.filter.httpclient import HttpClient
from kbroker.filter.records import Recorder
from kbroker.filter.sender import AiohttpSender
from kbroker.filter.service import FilterService


async def _no_wait(_: float) -> None:
    pass


def event(event_id: str) -> events.CloudEvent:
    attrs: dict[str, events.AttrValue] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/test",
        "type": "t.created",
    }
    return events.CloudEvent(attrs, b"{}")


async def test_retries_then_dead_letter_are_recorded(sinks: SinkServer) -> None:
    sink = sinks.sink("s", fail_first=3, fail_status=503)
    dls = sinks.sink("dls")
    d = Dispatcher(HttpClient(AiohttpSender()), sleep=_no_wait)
    broker = Broker("ns", "b", "ub", f"{sinks.base}/broker")
    spec = DeliverySpec(retry=1, dead_letter_uri=dls.url)
    t = Trigger("ns", "t1", TriggerUid("u1"), "b", sink.url, delivery=spec)
    try:
        await d.dispatch(event("e1"), t, broker, arrival=1.0)  # 2 attempts, both 503: DLS
        await d.dispatch(event("e2"), t, broker)  # 503 then 200
    finally:
        await d.sender.close()
    got = d.recorder.snapshot("ns", "t1")
    assert got is not None
    first, second = got.recent
    assert first.verdict is Verdict.DEAD_LETTERED
    assert [(a.target, a.status) for a in first.attempts[:2]] == [
        ("subscriber", 503),
        ("subscriber", 503),
    ]
    dead = first.attempts[-1]
    assert dead.target == "dead-letter" and dead.status is not None and dead.status < 300
    assert first.latency > 0  # from the arrival time given
    assert second.verdict is Verdict.DELIVERED and second.event_id == "e2"
    w = got.windows["1m"]
    assert (w.delivered, w.dead_lettered, w.retries) == (1, 1, 2)
    assert w.responses == {"5xx": 3, "2xx": 1}
    assert got.last_failure == first
    assert got.in_retry == 0


def test_recorder_retains_only_live_triggers() -> None:
    r = Recorder()
    for name in ("a", "b"):
        r.ring(Trigger("ns", name, TriggerUid(name), "b", "http://x"))
    r.retain({("ns", "a")})
    assert r.get("ns", "a") is not None and r.get("ns", "b") is None
    assert set(r.snapshot_all()) == {("ns", "a")}


async def test_records_of_removed_triggers_are_dropped_on_the_next_contract() -> None:
    holder = ContractHolder()
    service = FilterService({}, holder, DispatcherSettings())
    kept = Trigger("ns", "kept", TriggerUid("k"), "b", "http://x")
    service.dispatcher.recorder.ring(kept)
    service.dispatcher.recorder.ring(Trigger("ns", "gone", TriggerUid("g"), "b", "http://x"))
    try:
        await holder.publish(Contract(generation=1, triggers=(kept,)))
    finally:
        await service.close(0.1)
    assert set(service.dispatcher.recorder.snapshot_all()) == {("ns", "kept")}


def _confirm(ev: events.CloudEvent) -> events.CloudEvent:
    attrs: dict[str, events.AttrValue] = {
        "specversion": "1.0",
        "id": "r-" + ev.id,
        "source": "/sub",
        "type": "t.confirmed",
    }
    return events.CloudEvent(attrs, b"ok")


async def test_a_stored_reply_is_counted(sinks: SinkServer) -> None:
    sink = sinks.sink("s", reply=_confirm)
    stored = sinks.sink("broker", status=202)
    refused = sinks.sink("full", status=503)
    d = Dispatcher(HttpClient(AiohttpSender()), sleep=_no_wait)
    t = Trigger("ns", "t1", TriggerUid("u1"), "b", sink.url)
    try:
        await d.dispatch(event("e1"), t, Broker("ns", "b", "ub", stored.url))
        await d.dispatch(event("e2"), t, Broker("ns", "b", "ub", refused.url))
    finally:
        await d.sender.close()
    got = d.recorder.snapshot("ns", "t1")
    assert got is not None
    ok, dropped = got.recent
    assert (ok.replied, ok.attempts[-1].target, ok.attempts[-1].status) == (True, "reply", 202)
    assert (dropped.verdict, dropped.replied) == (Verdict.DROPPED, False)  # the reply was refused
    assert got.windows["1m"].replies == 1
