"""The dead-letters service over fake ports: decoding, joining, filtering, redrive, republish,
pacing, and the honest note for a URI sink."""

from __future__ import annotations

import pytest
from fixtures.deadletter_fakes import (
    AUDIT,
    CONTRACT,
    DLQ,
    PAY,
    context,
    dead,
    pay_records,
)
from kbroker.ui import service_deadletters as svc


async def test_lists_decoded_with_trigger_and_attempts() -> None:
    ctx, _, _ = context()
    got = await svc.list_dead_letters(ctx, "ns", "dlq")
    assert got.triggers == ("ns/pay", "ns/ship")  # a trailing slash still names the Broker
    a, b, c = got.letters
    assert (a.id, a.code, a.data, a.trigger, a.attempts) == ("a", 500, "boom", "ns/pay", 3)
    assert (b.code, b.data, b.trigger, b.attempts) == (422, "bad order", "ns/ship", None)
    assert (c.code, c.data, c.dest) == (None, "", PAY.subscriber_uri)


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        (svc.Query(trigger="pay"), ["a", "c"]),
        (svc.Query(trigger="ns/ship"), ["b"]),
        (svc.Query(code="5xx"), ["a"]),
        (svc.Query(code="422"), ["b"]),
        (svc.Query(code="none"), ["c"]),
        (svc.Query(since=150.0), ["b", "c"]),
        (svc.Query(until=250.0), ["a", "b"]),
    ],
)
async def test_filters(query: svc.Query, ids: list[str]) -> None:
    ctx, _, _ = context()
    got = await svc.list_dead_letters(ctx, "ns", "dlq", query)
    assert [d.id for d in got.letters] == ids


async def test_unknown_broker_or_trigger_is_404() -> None:
    ctx, _, _ = context()
    with pytest.raises(svc.DeadLetterError) as e:
        await svc.list_dead_letters(ctx, "ns", "nope")
    assert e.value.status == 404
    with pytest.raises(svc.DeadLetterError):
        await svc.list_dead_letters(ctx, "ns", "dlq", svc.Query(trigger="nope"))


async def test_a_backend_without_history_says_so() -> None:
    ctx, events, _ = context()
    events.stored = None
    got = await svc.list_dead_letters(ctx, "ns", "dlq")
    assert got.letters == () and "keeps no history" in got.note


def test_sink_broker_resolution() -> None:
    assert svc.sink_broker(CONTRACT, DLQ.address) == DLQ
    assert svc.sink_broker(CONTRACT, AUDIT.delivery.dead_letter_uri) is None
    assert svc.sink_broker(CONTRACT, None) is None


def test_uri_sink_is_honest_and_shows_the_rings_dead_letters() -> None:
    note, sent = svc.uri_sink(AUDIT, pay_records())
    assert "cannot be read back" in note and "http://127.0.0.1:9002/sink" in note
    assert [o.event_id for o in sent] == ["a"]


def test_decode_data() -> None:
    assert svc.decode_data("Ym9vbQ==") == "boom"
    assert svc.decode_data("Ym9vbQ=")[:3] == "boo"  # cut short by the dispatcher's limit
    assert svc.decode_data("//79") == "<3 bytes, binary>"
    assert svc.decode_data("not base64!") == "not base64!"
    assert svc.decode_data(None) == ""


async def test_targeted_redrive_strips_the_error_extensions_and_keeps_the_id() -> None:
    ctx, events, deliveries = context()
    report = await svc.redrive(ctx, "ns", "dlq", "pay", ["c", "zz"])
    assert report.missing == ["zz"]
    ((ns, trigger, sent),) = deliveries.sent
    assert (ns, trigger, sent.id) == ("ns", "pay", "c")
    assert not any(k.startswith("knativeerror") for k in sent.attributes)
    assert sent.data == b'{"n": 1}'
    assert [o.event_id for o in report.outcomes] == ["c"]
    assert events.published == []  # never through the broker


async def test_redrive_all_takes_only_that_triggers_letters_up_to_the_cap() -> None:
    ctx, _, deliveries = context()
    report = await svc.redrive(ctx, "ns", "dlq", "pay", None, cap=1)
    assert [e.id for _, _, e in deliveries.sent] == ["a"]
    assert report.capped == 1


async def test_bulk_redrive_is_paced() -> None:
    clock = [0.0]
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)
        clock[0] += s

    stored = [dead(str(i), PAY.subscriber_uri, 500) for i in range(5)]
    ctx, _, deliveries = context(stored)
    pace = svc.Pace(2.0, sleep, lambda: clock[0])
    for _ in range(5):
        await pace.wait()
    assert waits == [0.5] * 4
    with pytest.raises(svc.DeadLetterError):
        svc.Pace(0)
    with pytest.raises(svc.DeadLetterError):
        await svc.redrive(ctx, "ns", "dlq", "pay", None, rate=10_000)
    report = await svc.redrive(ctx, "ns", "dlq", "pay", None, rate=100.0, sleep=sleep)
    assert len(report.outcomes) == 5 and len(deliveries.sent) == 5


async def test_republish_goes_to_the_broker_with_a_warning() -> None:
    ctx, events, deliveries = context()
    report = await svc.republish(ctx, "ns", "dlq", "orders", ["b"])
    assert [e.id for e in events.published] == ["b"]
    assert "knativeerrorcode" not in events.published[0].attributes
    assert report.published == 1 and "every Trigger" in report.warning
    assert deliveries.sent == []
    with pytest.raises(svc.DeadLetterError):
        await svc.republish(ctx, "ns", "dlq", "dlq", ["b"])
    with pytest.raises(svc.DeadLetterError):
        await svc.republish(ctx, "ns", "dlq", "nope", ["b"])


async def test_a_port_that_cannot_redrive_is_a_clear_501() -> None:
    ctx, _, deliveries = context()

    async def cannot(namespace: str, trigger: str, events: object) -> list[object]:
        raise RuntimeError("redrive is served by `kbroker run` only")

    deliveries.redrive = cannot  # type: ignore[method-assign,assignment]
    with pytest.raises(svc.DeadLetterError) as e:
        await svc.redrive(ctx, "ns", "dlq", "pay", ["a"])
    assert e.value.status == 501 and "kbroker run" in str(e.value)
