"""The generator's hand-built requests are valid CloudEvents: decoded by the project's own codec."""

from __future__ import annotations

import pytest
from kbroker.core import events

from kbroker.bench import payload


def _decode(shape: payload.EventShape, seq: int, count: int) -> list[events.CloudEvent]:
    headers, body = shape.build(seq, count, ts_us=1_700_000_000_000_000)
    raw = [(k.lower().encode(), v.encode()) for k, v in headers]
    return events.decode_http(raw, body)


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_single_event_modes(mode: str) -> None:
    shape = payload.EventShape(mode=mode, size=100, groups=7, durability="all")
    headers, _ = shape.build(12, 1, 5)
    assert ("Kbroker-Durability", "all") in headers
    (event,) = _decode(shape, 12, 1)
    assert event.id == "b-12"
    assert event.type == payload.CE_TYPE
    assert events.attr_string(event.attributes["benchseq"]) == "12"
    assert events.attr_string(event.attributes["benchgroup"]) == "5"  # 12 % 7
    assert event.data is not None
    assert len(event.data) == 100


def test_batch_carries_consecutive_sequence_numbers() -> None:
    shape = payload.EventShape(mode="batch", size=10, batch=5)
    decoded = _decode(shape, 40, 3)
    assert [e.id for e in decoded] == ["b-40", "b-41", "b-42"]
    assert {events.attr_string(e.attributes["benchts"]) for e in decoded} == {"1700000000000000"}


def test_shape_refuses_unknown_modes() -> None:
    with pytest.raises(ValueError, match="mode"):
        payload.EventShape(mode="proto")
