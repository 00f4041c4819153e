"""The Kafka channel's record format, without a Kafka: what `encode` writes `decode` reads back,
and records from other producers decode as they should."""

from __future__ import annotations

import pytest
from kbroker.core.channel import Envelope
from kbroker.core.channels import _kafka_records as records
from kbroker.core.events import CloudEvent, EventError

BASE = {"specversion": "1.0", "id": "e1", "source": "/s", "type": "t"}
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    "env",
    [
        Envelope(CloudEvent(dict(BASE), b"x"), arrival=1700000000.25),
        Envelope(
            CloudEvent({**BASE, "count": 7, "neg": -3, "flag": True, "off": False}, None),
            arrival=1.5,
            traceparent=TRACE,
            tracestate="k=v",
        ),
        Envelope(
            CloudEvent({**BASE, "partitionkey": "pk", "datacontenttype": "text/plain"}, b"hi"),
            arrival=2.0,
        ),
        Envelope(CloudEvent({**BASE, "text": "7", "word": "true"}, b""), arrival=3.0),
    ],
    ids=["plain", "typed-and-traced", "keyed", "strings-that-look-typed"],
)
def test_what_encode_writes_decode_reads_back(env: Envelope) -> None:
    key, headers, value = records.encode(env)
    got = records.decode(headers, value, timestamp_ms=0)
    assert got == env
    assert records.key_of(key) == env.event.get("partitionkey")


def test_side_headers_are_not_ce_headers() -> None:
    """Other readers see a plain binary-mode CloudEvent: our extras are not `ce_` attributes."""
    env = Envelope(CloudEvent({**BASE, "count": 1}, b"x"), arrival=1.0, traceparent=TRACE)
    _, headers, _ = records.encode(env)
    names = [name for name, _ in headers]
    assert {"kb_arrival", "kb_types", "traceparent"} <= set(names)
    assert [n for n in names if n.startswith("ce_")] == [f"ce_{k}" for k in env.event.attributes]


@pytest.mark.parametrize(
    ("headers", "arrival"),
    [
        ([("ce_specversion", b"1.0"), ("ce_id", b"e1"), ("ce_source", b"/s"), ("ce_type", b"t")],
         1234.5),
        ({"ce_specversion": "1.0", "ce_id": "e1", "ce_source": "/s", "ce_type": "t"}, 1234.5),
        ([("ce_specversion", b"1.0"), ("ce_id", b"e1"), ("ce_source", b"/s"), ("ce_type", b"t"),
          ("kb_arrival", b"not-a-number"), ("ce_empty", None)], 1234.5),
        ([("ce_specversion", b"1.0"), ("ce_id", b"e1"), ("ce_source", b"/s"), ("ce_type", b"t"),
          ("kb_arrival", b"99.5")], 99.5),
    ],
    ids=["binary-list", "binary-dict", "bad-arrival-falls-back", "our-arrival"],
)  # fmt: skip
def test_records_of_other_producers(headers: records.RawHeaders, arrival: float) -> None:
    env = records.decode(headers, b"data", timestamp_ms=1234500)
    assert env.event.id == "e1" and env.event.data == b"data"
    assert env.arrival == arrival
    assert env.traceparent is None and env.tracestate is None


def test_a_types_header_only_retypes_what_parses() -> None:
    headers = [
        ("ce_specversion", b"1.0"), ("ce_id", b"e1"), ("ce_source", b"/s"), ("ce_type", b"t"),
        ("ce_n", b"abc"), ("ce_b", b"yes"), ("ce_m", b"-4"),
        ("kb_types", b"n=i,b=b,m=i,missing=i"),
    ]  # fmt: skip
    attrs = records.decode(headers, None, timestamp_ms=0).event.attributes
    assert (attrs["n"], attrs["b"], attrs["m"]) == ("abc", "yes", -4)
    assert "missing" not in attrs


def test_a_record_that_is_no_cloudevent_raises() -> None:
    with pytest.raises(EventError):
        records.decode([("some", b"header")], b"plain bytes", timestamp_ms=0)


@pytest.mark.parametrize(
    ("key", "want"), [(b"pk", "pk"), ("pk", "pk"), (None, None), (b"\xff", "\ufffd")]
)
def test_key_of(key: str | bytes | None, want: str | None) -> None:
    assert records.key_of(key) == want
