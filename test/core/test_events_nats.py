"""core.events' NATS binding (to_nats / from_nats) and the NATS channel's record format, sans-IO:
binary mode out, both modes in, percent-encoding, and the kb-* headers other readers ignore."""

from __future__ import annotations

import pytest
from kbroker.core.channel import Envelope
from kbroker.core.channels import _nats_records
from kbroker.core.events import CloudEvent, EventError, UnsupportedMediaType, from_nats, to_nats

BASE = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


def test_to_nats_is_binary_mode_with_every_attribute_as_a_ce_header() -> None:
    event = CloudEvent({**BASE, "datacontenttype": "application/json", "note": "a b%"}, b"{}")
    headers, payload = to_nats(event)
    assert headers == {
        "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t",
        "ce-datacontenttype": "application/json", "ce-note": "a%20b%25",
    }  # fmt: skip
    assert payload == b"{}"
    assert "Content-Type" not in headers and "content-type" not in headers


STRUCTURED = b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"x"}'

# (case, headers, payload, attributes expected, data expected)
READ_CASES = [
    ("binary", {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"},
     b"raw", BASE, b"raw"),
    ("binary, header names any case, datacontenttype as a ce- header",
     {"CE-SpecVersion": "1.0", "Ce-Id": "1", "ce-source": "/s", "ce-type": "t",
      "ce-datacontenttype": "text/plain"}, b"x", {**BASE, "datacontenttype": "text/plain"}, b"x"),
    ("binary, percent-encoded and quoted values",
     {**{f"ce-{k}": v for k, v in BASE.items()}, "ce-note": "caf%C3%A9", "ce-q": '"a b"'}, b"",
     {**BASE, "note": "café", "q": "a b"}, None),
    ("structured by Content-Type", {"Content-Type": "application/cloudevents+json"}, STRUCTURED,
     {**BASE, "datacontenttype": "application/json"}, b'"x"'),
    ("structured without headers (eventing-natss, servers before 2.2)", None, STRUCTURED,
     {**BASE, "datacontenttype": "application/json"}, b'"x"'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "payload", "attrs", "data"),
    [c[1:] for c in READ_CASES],
    ids=[c[0] for c in READ_CASES],
)
def test_from_nats_reads_both_modes(
    headers: dict[str, str] | None, payload: bytes, attrs: dict[str, str], data: bytes | None
) -> None:
    event = from_nats(headers, payload)
    assert event.attributes == attrs
    assert event.data == data


@pytest.mark.parametrize(
    ("headers", "payload", "error"),
    [
        ({"ce-id": "1"}, b"x", EventError),  # required attributes missing
        ({"Content-Type": "application/cloudevents+avro"}, b"x", UnsupportedMediaType),
        (None, b"not json", EventError),
        ({**{f"ce-{k}": v for k, v in BASE.items()}, "ce-bad name": "x"}, b"", EventError),
    ],
)
def test_from_nats_rejects(
    headers: dict[str, str] | None, payload: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        from_nats(headers, payload)


def test_record_round_trip_keeps_types_trace_context_and_arrival() -> None:
    event = CloudEvent({**BASE, "count": 7, "flag": True, "partitionkey": "k"}, b"\x00\xff")
    env = Envelope(event, arrival=1234.5, traceparent="00-ab-cd-01", tracestate="k=v")
    headers, payload = _nats_records.encode(env)
    back = _nats_records.decode(headers, payload, timestamp=9.0)
    assert back == env
    assert _nats_records.key_of(back) == "k"


def test_record_from_another_client_takes_the_stream_timestamp() -> None:
    headers = {f"ce-{k}": v for k, v in BASE.items()}
    back = _nats_records.decode(headers, b"", timestamp=42.0)
    assert back.arrival == 42.0 and back.traceparent is None
