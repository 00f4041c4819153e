"""ui/service_events with fake ports: the tester's verdicts and overlap, pasted events, payload
rendering, and the tail's filter, "matched by" and drop counting."""

from __future__ import annotations

from typing import Any

import pytest
from fixtures.console_events_fakes import EXACT_A, FakeEvents, ctx, ev
from kbroker.controller import validate
from kbroker.core.events import CloudEvent
from kbroker.ui import service_events as svc


async def test_matches_k_of_n_with_overlap() -> None:
    stored = [ev(i, "a" if i % 3 == 0 else "b") for i in range(9)]
    result = await svc.test_filter(ctx(FakeEvents(stored)), "ns", "b", [EXACT_A], skip="only-a")
    assert (result.matched, result.total) == (3, 9)
    assert result.summary == "matches 3 of 9"
    assert [r.envelope.event.id for r in result.rows if r.matched] == ["0", "3", "6"]
    assert result.rows[1].others == ("everything", "only-b")
    assert result.overlap == {"everything": 9, "only-b": 6}
    assert not result.rows[1].explain.matched
    assert "expected 'a'" in result.rows[1].explain.detail


async def test_limit_reads_the_last_events() -> None:
    stored = [ev(i) for i in range(10)]
    result = await svc.test_filter(ctx(FakeEvents(stored)), "ns", "b", [], limit=4)
    assert [r.envelope.event.id for r in result.rows] == ["6", "7", "8", "9"]


async def test_no_history_is_said() -> None:
    result = await svc.test_filter(ctx(FakeEvents(None)), "ns", "b", [EXACT_A])
    assert not result.history and result.total == 0
    assert "no history" in result.summary


async def test_unknown_broker_is_404() -> None:
    with pytest.raises(svc.BadRequest) as err:
        await svc.test_filter(ctx(FakeEvents([])), "ns", "nope", [])
    assert err.value.status == 404


def test_pasted_structured_and_binary() -> None:
    [one] = svc.parse_structured(
        '{"specversion":"1.0","id":"x","source":"/s","type":"a","data":{"k":1}}'
    )
    assert one.type == "a" and one.data == b'{"k":1}'
    headers = svc.parse_headers_text(
        "ce-specversion: 1.0\nce-id: y\nce-source: /s\nce-type: b\nContent-Type: text/plain\n"
    )
    bin_ = svc.parse_binary(headers, "hello")
    assert bin_.type == "b" and bin_.data == b"hello"
    assert bin_.attributes["datacontenttype"] == "text/plain"
    with pytest.raises(svc.BadRequest):
        svc.parse_structured('{"id": "no specversion"}')
    with pytest.raises(svc.BadRequest):
        svc.parse_headers_text("no colon here")


@pytest.mark.parametrize(
    "spec",
    [
        {"filter": {"attributes": {"type": "a", "source": ""}}},
        {"filters": [{"exact": {"type": "a"}}, {"cesql": "source LIKE '/%'"}]},
        {"filters": [{"any": [{"prefix": {"type": "x"}}, {"not": {"suffix": {"source": "s"}}}]}]},
        {"filters": [{}]},
        {"filter": {"attributes": {"type": "a"}}, "filters": [{"all": []}]},
    ],
)
def test_spec_reading_equals_the_controllers(spec: dict[str, Any]) -> None:
    issues = validate.Issues()
    expected = validate.legacy_filter(spec.get("filter"), issues) + validate.filters(
        spec.get("filters"), issues
    )
    assert svc.filters_from_spec(spec) == expected


def test_payload_rendering() -> None:
    js = svc.render_payload(CloudEvent({"datacontenttype": "application/json"}, b'{"a":1}'), True)
    assert js["kind"] == "json" and js["text"] == '{\n  "a": 1\n}'
    raw = svc.render_payload(
        CloudEvent({"datacontenttype": "application/octet-stream"}, b"\x00\xff"), True
    )
    assert raw == {"size": 2, "truncated": False, "kind": "hex", "text": "00 ff"}
    big = svc.render_payload(CloudEvent({}, b"x" * (svc.PAYLOAD_CUT + 5)), True)
    assert big["truncated"] and len(big["text"]) == svc.PAYLOAD_CUT
    assert svc.render_payload(CloudEvent({}, b"secret"), False) == {"size": 6, "hidden": True}


async def test_tail_filters_and_names_matching_triggers() -> None:
    events = FakeEvents([], live=[ev(1, "a"), ev(2, "b"), ev(3, "a")])
    stream = await svc.open_tail(ctx(events), "ns", "b", "type = 'a'", idle=0.05)
    got: list[svc.TailItem] = []
    async for batch in stream:
        got.extend(batch.items)
        if len(got) >= 2:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert [i.envelope.event.id for i in got] == ["1", "3"]
    assert got[0].matched_by == ("only-a", "everything")
    assert events.closed


async def test_tail_counts_drops_when_the_viewer_is_slow() -> None:
    events = FakeEvents([], live=[ev(i) for i in range(10)])
    stream = await svc.open_tail(ctx(events), "ns", "b", capacity=3, idle=0.05)
    batch = await anext(stream)
    assert batch.dropped == 7
    assert [i.envelope.event.id for i in batch.items] == ["7", "8", "9"]
    await stream.aclose()  # type: ignore[attr-defined]


async def test_tail_rejects_bad_cesql() -> None:
    with pytest.raises(svc.BadRequest):
        await svc.open_tail(ctx(FakeEvents([])), "ns", "b", "type = ")
