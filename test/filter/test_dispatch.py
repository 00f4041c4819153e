"""One event's hop against real HTTP subscribers: retries, backoff, replies, dead letters.

Backoff waits go through an injected `sleep` that records and returns at once, so schedules are
checked exactly without waiting (the subscribers themselves are real aiohttp servers).

    dispatcher --POST--> sink (fails N times) --> [reply] --POST--> broker stand-in
         \\--after retries--> dead-letter sink
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from fixtures.subscriber import SinkServer
from kbroker.core import events
from kbroker.core.contract import BackoffPolicy, Broker, DeliverySpec, Trigger, TriggerUid
from kbroker.core.delivery import Outcome
from kbroker.filter.dispatch import Dispatcher
from kbroker.filter.httpclient import HttpClient
from kbroker.filter.sender import AiohttpSender


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def event(**extra: str) -> events.CloudEvent:
    attrs: dict[str, events.AttrValue] = {
        "specversion": "1.0",
        "id": "e1",
        "source": "/test",
        "type": "t.created",
        "knativebrokerttl": "255",
        **extra,
    }
    return events.CloudEvent(attrs, b'{"n": 1}')


def trigger(url: str, delivery: DeliverySpec) -> Trigger:
    return Trigger("ns", "t1", TriggerUid("u1"), "b", url, delivery=delivery)


@pytest.fixture(params=["raw", "aiohttp"])
async def dispatcher(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Dispatcher, Sleeps]]:
    sleeps = Sleeps()
    sender = AiohttpSender() if request.param == "aiohttp" else HttpClient(AiohttpSender())
    d = Dispatcher(sender, sleep=sleeps)
    yield d, sleeps
    await d.sender.close()


async def test_delivers_binary_with_knative_headers(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, _ = dispatcher
    sink = sinks.sink("s")
    broker = Broker("ns", "b", "ub", f"{sinks.base}/broker")
    result = await d.dispatch(event(), trigger(sink.url, DeliverySpec()), broker)
    assert result.outcome is Outcome.DELIVERED
    got = sink.received[0]
    assert got.headers["ce-id"] == "e1"
    assert got.headers["prefer"] == "reply"
    assert got.headers["kn-namespace"] == "ns"
    assert "ce-knativebrokerttl" not in got.headers  # the TTL is the broker's, not the subscriber's
    assert got.body == b'{"n": 1}'


async def test_exponential_retries_then_success(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, sleeps = dispatcher
    sink = sinks.sink("s", fail_first=3, fail_status=503)
    spec = DeliverySpec(retry=3, backoff_policy=BackoffPolicy.EXPONENTIAL, backoff_delay=0.2)
    broker = Broker("ns", "b", "ub", f"{sinks.base}/broker")
    result = await d.dispatch(event(), trigger(sink.url, spec), broker)
    assert result.outcome is Outcome.DELIVERED
    assert result.attempts == 4
    assert len(sink.received) == 4
    assert sleeps.waits == pytest.approx([0.2, 0.4, 0.8])


async def test_linear_schedule(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, sleeps = dispatcher
    sink = sinks.sink("s", fail_first=10)
    dls = sinks.sink("dls")
    spec = DeliverySpec(
        retry=3, backoff_policy=BackoffPolicy.LINEAR, backoff_delay=1.0, dead_letter_uri=dls.url
    )
    broker = Broker("ns", "b", "ub", f"{sinks.base}/broker")
    result = await d.dispatch(event(), trigger(sink.url, spec), broker)
    assert result.outcome is Outcome.DEAD_LETTERED
    assert sleeps.waits == [1.0, 2.0]  # 0 (immediate) is not slept; then d, 2d
    assert len(sink.received) == 4


async def test_non_retryable_goes_straight_to_dead_letter(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, _ = dispatcher
    sink = sinks.sink("s", fail_first=100, fail_status=422, fail_body=b"bad order")
    dls = sinks.sink("dls")
    spec = DeliverySpec(retry=5, dead_letter_uri=dls.url)
    broker = Broker("ns", "b", "ub", f"{sinks.base}/broker")
    result = await d.dispatch(event(), trigger(sink.url, spec), broker)
    assert result.outcome is Outcome.DEAD_LETTERED
    assert len(sink.received) == 1
    dead = dls.received[0]
    assert dead.headers["ce-knativeerrordest"] == sink.url
    assert dead.headers["ce-knativeerrorcode"] == "422"
    assert base64.b64decode(dead.headers["ce-knativeerrordata"]) == b"bad order"
    assert dead.headers["kn-namespace"] == "ns"
    assert dead.body == b'{"n": 1}'


async def test_422_without_body_has_no_errordata(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, _ = dispatcher
    sink = sinks.sink("s", fail_first=100, fail_status=422)
    dls = sinks.sink("dls")
    broker = Broker("ns", "b", "ub", f"{sinks.base}/broker")
    await d.dispatch(event(), trigger(sink.url, DeliverySpec(dead_letter_uri=dls.url)), broker)
    assert "ce-knativeerrordata" not in dls.received[0].headers
    assert dls.received[0].headers["ce-knativeerrorcode"] == "422"


async def test_unreachable_subscriber_dead_letters_with_dest(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, _ = dispatcher
    dls = sinks.sink("dls")
    url = "http://127.0.0.1:9/nowhere"
    broker = Broker("ns", "b", "ub", f"{sinks.base}/broker")
    result = await d.dispatch(
        event(), trigger(url, DeliverySpec(retry=1, dead_letter_uri=dls.url)), broker
    )
    assert result.outcome is Outcome.DEAD_LETTERED
    assert dls.received[0].headers["ce-knativeerrordest"] == url
    assert "ce-knativeerrorcode" not in dls.received[0].headers


async def test_failure_without_dead_letter_is_dropped(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, _ = dispatcher
    sink = sinks.sink("s", fail_first=100)
    broker = Broker("ns", "b", "ub", f"{sinks.base}/broker")
    result = await d.dispatch(event(), trigger(sink.url, DeliverySpec(retry=2)), broker)
    assert result.outcome is Outcome.DROPPED
    assert len(sink.received) == 3


def _confirm(ev: events.CloudEvent) -> events.CloudEvent:
    return events.CloudEvent(
        {"specversion": "1.0", "id": "r-" + ev.id, "source": "/sub", "type": "t.confirmed"}, b"ok"
    )


async def test_reply_goes_to_broker_with_ttl_minus_one(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, _ = dispatcher
    sink = sinks.sink("s", reply=_confirm)
    ingress = sinks.sink("broker", status=202)
    broker = Broker("ns", "b", "ub", ingress.url)
    result = await d.dispatch(
        event(knativebrokerttl="10"), trigger(sink.url, DeliverySpec()), broker
    )
    assert result.outcome is Outcome.DELIVERED
    reply = ingress.received[0]
    assert reply.headers["ce-type"] == "t.confirmed"
    assert reply.headers["ce-knativebrokerttl"] == "9"


async def test_reply_dropped_when_ttl_runs_out(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, _ = dispatcher
    sink = sinks.sink("s", reply=_confirm)
    ingress = sinks.sink("broker", status=202)
    broker = Broker("ns", "b", "ub", ingress.url)
    result = await d.dispatch(
        event(knativebrokerttl="1"), trigger(sink.url, DeliverySpec()), broker
    )
    assert result.outcome is Outcome.DELIVERED
    assert ingress.received == []


async def test_reply_store_failure_fails_the_delivery(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, _ = dispatcher
    sink = sinks.sink("s", reply=_confirm)
    ingress = sinks.sink("broker", status=503)
    dls = sinks.sink("dls")
    broker = Broker("ns", "b", "ub", ingress.url)
    spec = DeliverySpec(retry=1, dead_letter_uri=dls.url)
    result = await d.dispatch(event(), trigger(sink.url, spec), broker)
    assert result.outcome is Outcome.DEAD_LETTERED
    assert len(sink.received) == 2
    assert dls.received[0].headers["ce-knativeerrordest"] == ingress.url


async def test_structured_format_when_asked(sinks: SinkServer, dispatcher) -> None:  # type: ignore[no-untyped-def]
    d, _ = dispatcher
    sink = sinks.sink("s")
    broker = Broker("ns", "b", "ub", f"{sinks.base}/broker")
    await d.dispatch(event(), trigger(sink.url, DeliverySpec(format="json")), broker)
    got = sink.received[0]
    assert got.headers["content-type"].startswith("application/cloudevents+json")
    assert got.event is not None and got.event.id == "e1"
