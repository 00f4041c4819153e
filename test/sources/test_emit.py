"""sources/emit: a real HTTP sink (retries on core/delivery's rules) and a Broker's channel."""

from __future__ import annotations

import datetime as dt

import pytest
from fixtures.subscriber import SinkServer
from kbroker.core import contract, events, ttl
from kbroker.core.channel import ChannelUnavailable, Envelope
from kbroker.sources.emit import SinkEmitter
from kbroker.sources.ping import event_for

FAST = contract.DeliverySpec(
    retry=3, backoff_policy=contract.BackoffPolicy.EXPONENTIAL, backoff_delay=0.01, timeout=5.0
)
BROKER = contract.Broker("ns", "b", "uid", "http://kbroker.test/ns/b")
TICK = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ping(sink_uri: str, sink_broker: str = "") -> contract.PingSource:
    return contract.PingSource(
        "ns", "p", "u", "* * * * *", sink_uri=sink_uri, sink_broker=sink_broker, data="x"
    )


@pytest.mark.parametrize(
    ("fail_first", "fail_status", "delivered", "requests"),
    [
        (0, 500, True, 1),
        (2, 503, True, 3),
        (2, 429, True, 3),
        (9, 503, False, 4),  # retries exhausted: dropped (and logged)
        (9, 400, False, 1),  # not retryable
    ],
)
async def test_http_sink_retries(
    sinks: SinkServer, fail_first: int, fail_status: int, delivered: bool, requests: int
) -> None:
    sink = sinks.sink("s", fail_first=fail_first, fail_status=fail_status)
    emitter = SinkEmitter({}, lambda key: None, FAST)
    p = ping(sink.url)
    try:
        assert await emitter.emit(p, event_for(p, TICK)) is delivered
    finally:
        await emitter.close()
    assert len(sink.received) == requests
    got = sink.events[0]
    assert got.attributes["type"] == "dev.knative.sources.ping" and got.data == b"x"
    assert ttl.EXTENSION not in got.attributes


class FlakyChannel:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.appended: list[tuple[contract.Broker, list[Envelope], contract.Durability]] = []

    async def append(
        self, broker: contract.Broker, envelopes: list[Envelope], durability: contract.Durability
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise ChannelUnavailable("not now")
        self.appended.append((broker, envelopes, durability))


async def test_broker_sink_is_appended_at_durability_all_with_a_ttl() -> None:
    channel = FlakyChannel(failures=1)
    emitter = SinkEmitter(
        {"embedded": channel},  # type: ignore[dict-item]
        lambda key: BROKER if key == "ns/b" else None,
        FAST,
    )
    p = ping("http://unused.invalid/", sink_broker="ns/b")
    assert await emitter.emit(p, event_for(p, TICK))
    ((broker, (env,), durability),) = channel.appended
    assert broker is BROKER and durability is contract.Durability.ALL
    assert env.event.attributes[ttl.EXTENSION] == str(ttl.DEFAULT)
    assert isinstance(env.event, events.CloudEvent) and env.event.data == b"x"
