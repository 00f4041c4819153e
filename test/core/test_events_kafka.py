"""Kafka binary/structured binding of core.events (reference notes §2)."""

from __future__ import annotations

import pytest
from kbroker.core import events
from kbroker.core.events import CloudEvent, EventError, UnsupportedMediaType

BASE = {"specversion": "1.0", "id": "1", "source": "/src", "type": "com.example.t"}


def record(**extra: bytes) -> list[tuple[str, bytes]]:
    headers = [("ce_" + k, v.encode()) for k, v in BASE.items()]
    return headers + list(extra.items())


def test_to_kafka_maps_attributes_key_and_value() -> None:
    event = CloudEvent(
        {**BASE, "partitionkey": "user-7", "datacontenttype": "text/plain", "n": 5, "b": True},
        b"hello",
    )
    key, headers, value = events.to_kafka(event)
    assert key == b"user-7"
    assert value == b"hello"
    assert headers == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"1"),
        ("ce_source", b"/src"),
        ("ce_type", b"com.example.t"),
        ("ce_partitionkey", b"user-7"),
        ("content-type", b"text/plain"),
        ("ce_n", b"5"),
        ("ce_b", b"true"),
    ]


def test_to_kafka_without_partitionkey_or_data() -> None:
    key, headers, value = events.to_kafka(CloudEvent(dict(BASE)))
    assert key is None
    assert value is None
    assert all(name != "content-type" for name, _ in headers)


def test_no_percent_encoding_on_kafka() -> None:
    event = CloudEvent({**BASE, "subject": "Euro € 😀 100%"})
    _, headers, _ = events.to_kafka(event)
    assert ("ce_subject", "Euro € 😀 100%".encode()) in headers
    assert events.from_kafka(headers, None) == event


@pytest.mark.parametrize(
    "event",
    [
        CloudEvent(dict(BASE)),
        CloudEvent(dict(BASE), b""),
        CloudEvent({**BASE, "datacontenttype": "application/octet-stream"}, bytes(range(256))),
        CloudEvent({**BASE, "specversion": "0.3", "schemaurl": "x"}, b"{}"),
        CloudEvent({**BASE, "partitionkey": "k", "time": "2020-02-29T23:59:60.123456789-01:30"}),
    ],
    ids=["no-data", "empty-data", "binary-data", "v0.3", "partitionkey-time"],
)
def test_round_trip(event: CloudEvent) -> None:
    _, headers, value = events.to_kafka(event)
    assert events.from_kafka(headers, value) == event


def test_read_matches_prefix_case_insensitively_and_last_repeat_wins() -> None:
    headers = [
        ("CE_SpecVersion", b"1.0"),
        ("Ce_Id", b"first"),
        ("ce_source", b"/s"),
        ("ce_type", b"t"),
        ("ce_id", b"second"),
        ("Content-Type", b"text/plain"),
        ("traceparent", b"00-abc"),
    ]
    event = events.from_kafka(headers, b"x")
    assert event.attributes == {
        "specversion": "1.0",
        "id": "second",
        "source": "/s",
        "type": "t",
        "datacontenttype": "text/plain",
    }


def test_read_never_invents_partitionkey_and_keeps_none_value() -> None:
    event = events.from_kafka(record(), None)
    assert "partitionkey" not in event.attributes
    assert event.data is None


def test_header_without_value_is_empty_string() -> None:
    headers: list[tuple[str, bytes]] = [*record(), ("ce_ext", None)]  # type: ignore[list-item]
    assert events.from_kafka(headers, None).attributes["ext"] == ""


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ([("ce_id", b"1")], None, "specversion"),
        ([h for h in record() if h[0] != "ce_type"], None, "'type'"),
        (record(ce_specversion=b"2.0"), None, "specversion"),
        (record(ce_Bad_Name=b"x"), None, "invalid attribute name"),
        (record(ce_data=b"x"), None, "invalid attribute name"),
        (record(ce_datacontenttype=b"text/plain"), None, "content-type"),
        (record(ce_time=b"yesterday"), None, "RFC 3339"),
        (record(ce_subject=b"\xc0\xa0"), None, "UTF-8"),
        ([("content-type", b"application/cloudevents+json")], None, "value"),
        ([("content-type", b"application/cloudevents+json")], b"{", "malformed JSON"),
        ([], b"{}", "specversion"),
        (None, b"not json", "specversion"),
    ],
    ids=[
        "no-specversion",
        "no-type",
        "bad-specversion",
        "bad-name",
        "name-data",
        "ce_datacontenttype",
        "bad-time",
        "invalid-utf8",
        "structured-null-value",
        "structured-malformed",
        "fallback-structured-invalid",
        "no-headers-not-json",
    ],
)
def test_invalid_records(
    headers: list[tuple[str, bytes]] | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(EventError, match=reason):
        events.from_kafka(headers, value)


def test_structured_record() -> None:
    body = b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}'
    ct = [("content-type", b"Application/CloudEvents+JSON; charset=UTF-8"), ("ce_id", b"other")]
    event = events.from_kafka(ct, body)
    assert event.attributes["id"] == "1"  # the value wins over ce_ headers
    assert event.data == b'{"a":1}'


def test_structured_without_content_type_falls_back_to_json() -> None:
    body = b' {"specversion":"1.0","id":"1","source":"/s","type":"t"}'
    assert events.from_kafka([], body) == CloudEvent(dict(BASE, source="/s", type="t"))


def test_unsupported_structured_format() -> None:
    with pytest.raises(UnsupportedMediaType):
        events.from_kafka([("content-type", b"application/cloudevents+avro")], b"\x00")
