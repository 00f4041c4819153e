"""The delivery log lines of filter/dispatch.py against real subscribers: one line per retry,
dead-letter, drop and dead-letter-sink failure, with the fields an operator searches by, and
never more than the rate limit per trigger however many events fail.

    dispatcher --POST--> sink (500) --retries--> dead-letter sink (fails, then takes it)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from fixtures.subscriber import SinkServer
from kbroker.core import events, logs
from kbroker.core.contract import BackoffPolicy, Broker, DeliverySpec, Trigger, TriggerUid
from kbroker.core.delivery import Outcome
from kbroker.filter.dispatch import Dispatcher
from kbroker.filter.sender import AiohttpSender

LOGGER = "kbroker.filter.dispatch"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def event(i: int = 1) -> events.CloudEvent:
    attrs: dict[str, events.AttrValue] = {
        "specversion": "1.0",
        "id": f"e{i}",
        "source": "/test",
        "type": "t.created",
    }
    return events.CloudEvent(attrs, b"{}")


def trigger(url: str, delivery: DeliverySpec) -> Trigger:
    return Trigger("ns", "t1", TriggerUid("u1"), "b", url, delivery=delivery)


BROKER = Broker("ns", "b", "ub", "http://127.0.0.1:1/unused")


@pytest.fixture
async def dispatcher() -> AsyncIterator[tuple[Dispatcher, Clock]]:
    clock = Clock()
    d = Dispatcher(AiohttpSender(), sleep=Sleeps(), log_limiter=logs.RateLimiter(clock=clock))
    yield d, clock
    await d.sender.close()


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, object]]]:
    return [(r.getMessage(), logs.fields_of(r)) for r in caplog.records if r.name == LOGGER]


async def test_retries_then_dead_letter(
    sinks: SinkServer, dispatcher: tuple[Dispatcher, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    d, _ = dispatcher
    caplog.set_level(logging.INFO, LOGGER)
    sink = sinks.sink("s", status=500)
    dls = sinks.sink("dls")
    spec = DeliverySpec(
        retry=2,
        backoff_policy=BackoffPolicy.EXPONENTIAL,
        backoff_delay=0.5,
        dead_letter_uri=dls.url,
    )
    result = await d.dispatch(event(), trigger(sink.url, spec), BROKER)
    assert result.outcome is Outcome.DEAD_LETTERED
    common = {
        "namespace": "ns",
        "broker": "b",
        "trigger": "t1",
        "event_id": "e1",
        "event_type": "t.created",
    }
    retry = {"attempts": 3, "status": 500, "destination": sink.url}
    assert lines(caplog) == [
        ("delivery failed, retrying", {**common, "attempt": 1, **retry, "next_delay": 0.5}),
        ("delivery failed, retrying", {**common, "attempt": 2, **retry, "next_delay": 1.0}),
        (
            "event dead-lettered",
            {**common, "attempts": 3, "status": 500, "destination": sink.url, "dls_url": dls.url},
        ),
    ]
    levels = [r.levelno for r in caplog.records if r.name == LOGGER]
    assert levels == [logging.INFO, logging.INFO, logging.WARNING]


async def test_unreachable_subscriber_is_dropped_with_the_error(
    dispatcher: tuple[Dispatcher, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    d, _ = dispatcher
    caplog.set_level(logging.INFO, LOGGER)
    url = "http://127.0.0.1:1/nobody"
    result = await d.dispatch(event(), trigger(url, DeliverySpec(retry=0)), BROKER)
    assert result.outcome is Outcome.DROPPED
    [(msg, fields)] = lines(caplog)
    assert msg == "event dropped: delivery failed and no dead-letter sink is set"
    assert fields["attempts"] == 1
    assert "status" not in fields  # there was no response
    assert fields["error"]  # but there is a reason


async def test_failing_dead_letter_sink_logs_each_round(
    sinks: SinkServer, dispatcher: tuple[Dispatcher, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    d, _ = dispatcher
    caplog.set_level(logging.INFO, LOGGER)
    sink = sinks.sink("s", status=500)
    dls = sinks.sink("dls", fail_first=2, fail_status=503)
    spec = DeliverySpec(retry=0, dead_letter_uri=dls.url)
    result = await d.dispatch(event(), trigger(sink.url, spec), BROKER)
    assert result.outcome is Outcome.DEAD_LETTERED
    got = lines(caplog)
    assert [m for m, _ in got] == [
        "dead-letter sink failing, retrying",
        "dead-letter sink failing, retrying",
        "event dead-lettered",
    ]
    assert [(f["round"], f["status"], f["next_delay"]) for _, f in got[:2]] == [
        (1, 503, 2.0),
        (2, 503, 4.0),
    ]
    assert all(f["dls_url"] == dls.url and f["trigger"] == "t1" for _, f in got)


async def test_a_flood_of_failures_stays_within_the_limit(
    sinks: SinkServer, dispatcher: tuple[Dispatcher, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 events failing: at most the burst of each kind of line, then one line per kind
    saying how many were held back (when the next line comes, and from flush_log)."""
    d, clock = dispatcher
    caplog.set_level(logging.INFO, LOGGER)
    sink = sinks.sink("s", status=500)
    dls = sinks.sink("dls")
    spec = DeliverySpec(retry=1, dead_letter_uri=dls.url)
    t = trigger(sink.url, spec)
    burst = logs.RateLimiter().burst
    sem = asyncio.Semaphore(50)

    async def one(i: int) -> Outcome:
        async with sem:
            return (await d.dispatch(event(i), t, BROKER)).outcome

    outcomes = await asyncio.gather(*(one(i) for i in range(1000)))
    assert outcomes == [Outcome.DEAD_LETTERED] * 1000
    flood = lines(caplog)
    assert len(flood) == 2 * burst  # retry and dead-letter lines, a burst each
    assert all("suppressed" not in f for _, f in flood)

    clock.now += 60.0  # tokens again: the next line of each kind reports the held-back ones
    await d.dispatch(event(1000), t, BROKER)
    after = lines(caplog)[len(flood) :]
    assert [(m, f["suppressed"]) for m, f in after] == [
        ("delivery failed, retrying", 1000 - burst),
        ("event dead-lettered", 1000 - burst),
    ]

    await asyncio.gather(*(one(i) for i in range(1001, 1101)))  # held back: no tokens left
    caplog.clear()
    d.flush_log()
    summaries = {f["kind"]: f["suppressed"] for m, f in lines(caplog)}
    assert summaries == {"retry": 100 - 5, "dead_letter": 100 - 5}
