"""A Subscription's hop through the one dispatcher: its reply goes to the reply URL (not to the
channel it came from), is dropped when there is none, and carries no broker extension.

    dispatcher --POST--> step (replies) --POST--> reply URL (the next channel, a sink, a Broker)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fixtures.subscriber import SinkServer
from kbroker.core import contract, events
from kbroker.core.contract import Broker, DeliverySpec, Trigger, TriggerUid
from kbroker.core.delivery import Outcome
from kbroker.filter.dispatch import Dispatcher
from kbroker.filter.sender import AiohttpSender


def event() -> events.CloudEvent:
    attrs: dict[str, events.AttrValue] = {
        "specversion": "1.0",
        "id": "e1",
        "source": "/test",
        "type": "t.step",
        "knativebrokerttl": "255",  # stamped by the channel's ingress
    }
    return events.CloudEvent(attrs, b"data")


def subscription(url: str, reply: str, delivery: DeliverySpec | None = None) -> Trigger:
    return Trigger(
        "ns",
        "s-kn-sequence-0",
        TriggerUid("u1"),
        "s-kn-sequence-0",
        url,
        delivery=delivery or DeliverySpec(),
        kind=contract.SUBSCRIPTION,
        reply_uri=reply,
    )


@pytest.fixture
async def dispatcher() -> AsyncIterator[Dispatcher]:
    d = Dispatcher(AiohttpSender())
    yield d
    await d.sender.close()


def _channel(url: str) -> Broker:
    return Broker("ns", "s-kn-sequence-0", "c", url, kind=contract.CHANNEL)


def _answer(ev: events.CloudEvent) -> events.CloudEvent:
    return events.CloudEvent({**ev.attributes, "type": "t.next"}, (ev.data or b"") + b"-1")


async def test_reply_goes_to_the_reply_url_without_broker_extension(
    sinks: SinkServer, dispatcher: Dispatcher
) -> None:
    step = sinks.sink("step", reply=_answer)
    own, nxt = sinks.sink("own", status=202), sinks.sink("next", status=202)
    result = await dispatcher.dispatch(event(), subscription(step.url, nxt.url), _channel(own.url))
    assert result.outcome is Outcome.DELIVERED
    assert own.received == []  # never back into the channel it came from
    [got] = nxt.received
    assert got.event is not None and got.event.data == b"data-1"
    assert "knativebrokerttl" not in got.event.attributes
    assert step.received[0].headers["prefer"] == "reply"


async def test_reply_without_reply_url_is_dropped(
    sinks: SinkServer, dispatcher: Dispatcher
) -> None:
    step = sinks.sink("step", reply=_answer)
    own = sinks.sink("own", status=202)
    result = await dispatcher.dispatch(event(), subscription(step.url, ""), _channel(own.url))
    assert result.outcome is Outcome.DELIVERED
    assert own.received == []


async def test_reply_url_failing_dead_letters_the_original(
    sinks: SinkServer, dispatcher: Dispatcher
) -> None:
    step = sinks.sink("step", reply=_answer)
    nxt, dls = sinks.sink("next", status=503), sinks.sink("dls")
    spec = DeliverySpec(retry=1, dead_letter_uri=dls.url)
    result = await dispatcher.dispatch(
        event(), subscription(step.url, nxt.url, spec), _channel(sinks.base + "/own")
    )
    assert result.outcome is Outcome.DEAD_LETTERED
    [dead] = dls.received
    assert dead.event is not None and dead.event.data == b"data"
    assert dead.headers["ce-knativeerrordest"] == nxt.url
