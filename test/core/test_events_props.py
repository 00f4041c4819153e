"""Hypothesis properties of core.events: decoders fail only with EventError, and every valid event
survives encode -> decode in binary, structured, batch and Kafka modes."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from kbroker.core import _percent, _validate, events
from kbroker.core.events import AttrValue, CloudEvent, DecodeLimits, EventError

settings.register_profile("events", max_examples=80, deadline=None)
settings.load_profile("events")

CONTENT_TYPES = [
    "application/json",
    "Application/JSON; charset=utf-8",
    "application/vnd.example+json",
    "text/plain",
    "text/xml; charset=utf-8",
    "application/octet-stream",
    "image/png",
]
BATCH = "application/cloudevents-batch+json"
CE_TYPES = [
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "APPLICATION/CLOUDEVENTS+JSON; charset=utf-8",
    "application/cloudevents+avro",
    "application/cloudevents",
]

json_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)

# --- arbitrary input: only EventError may come out ---------------------------------------------

header_name = st.sampled_from(
    [
        *[b"ce-specversion", b"ce-id", b"CE-Source", b"ce-type", b"ce-time", b"content-type"],
        *[b"ce-x", b"ce-datacontenttype", b"ce-data", b"ce-", b"host"],
    ]
) | st.binary(max_size=12)
header_value = (
    st.sampled_from([b"1.0", b"0.3", b"2018-04-26T14:48:09Z", b'"q\\"', b"%C0%A0", b"%", b""])
    | st.sampled_from([ct.encode() for ct in CONTENT_TYPES + CE_TYPES])
    | st.binary(max_size=16)
)
members = st.dictionaries(
    st.sampled_from(["specversion", "id", "source", "type", "data", "data_base64", "time"])
    | st.sampled_from(["datacontenttype", "datacontentencoding", "subject", "x"])
    | st.text(max_size=4),
    st.sampled_from(["1.0", "0.3", "base64", "AA==", "text/plain", "application/json"])
    | json_value,
    max_size=9,
)
# JSON bombs: nesting around orjson's serialiser (255) and parser (1024) limits.
deep_event = st.integers(200, 1100).map(
    lambda n: (
        b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":'
        + b"[" * n
        + b"]" * n
        + b"}"
    )
)
body = (
    deep_event
    | st.binary(max_size=64)
    | members.map(orjson.dumps)
    | st.lists(members, max_size=3).map(orjson.dumps)
    | json_value.map(orjson.dumps)
)
limits = st.builds(
    DecodeLimits,
    max_event_bytes=st.integers(0, 400) | st.just(10**6),
    max_batch_events=st.integers(0, 3),
    max_body_bytes=st.integers(0, 400) | st.just(10**6),
    max_json_depth=st.integers(0, 6) | st.just(2000),
    max_attributes=st.integers(0, 8),
    lenient_percent=st.booleans(),
)


@given(
    st.none()
    | st.lists(
        st.tuples(
            st.sampled_from(["ce_specversion", "ce_id", "CE_SOURCE", "ce_type", "content-type"])
            | st.text(max_size=8),
            header_value,
        ),
        max_size=8,
    ),
    st.none() | body,
)
def test_from_kafka_raises_only_event_error(
    headers: list[tuple[str, bytes]] | None, value: bytes | None
) -> None:
    with contextlib.suppress(EventError):
        events.from_kafka(headers, value)


@given(members | json_value)
def test_from_json_raises_only_event_error(obj: Any) -> None:
    with contextlib.suppress(EventError):
        events.from_json(obj)


@given(st.text(), st.booleans())
def test_percent_encoding_is_inverted_by_decoding(text: str, lenient: bool) -> None:
    encoded = _percent.encode(text)
    assert encoded.isascii()
    assert _percent.decode(encoded.encode(), lenient) == text


# --- valid events round-trip ------------------------------------------------------------------


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    d = draw(st.dates(min_value=datetime.date(1, 1, 1)))
    h, m, sec = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 60))
    clock = f"{h:02d}:{m:02d}:{sec:02d}"
    frac = draw(st.sampled_from(["", ".1", ".123456", ".123456789012"]))
    zone = draw(st.sampled_from(["Z", "z", "+00:00", "-08:30", "+23:59"]))
    return f"{d.isoformat()}T{clock}{frac}{zone}"


ext_name = st.from_regex(r"[a-z0-9]{1,25}", fullmatch=True).filter(
    lambda n: n not in _validate.STRING_TYPED and n != "data"
)
ext_value: st.SearchStrategy[AttrValue] = (
    st.text() | st.booleans() | st.integers(min_value=-(2**31), max_value=2**31 - 1)
)


@st.composite
def valid_events(draw: st.DrawFn) -> CloudEvent:
    attrs: dict[str, AttrValue] = {
        "specversion": draw(st.sampled_from(["1.0", "0.3"])),
        "id": draw(st.text(min_size=1)),
        "source": draw(st.text(min_size=1)),
        "type": draw(st.text(min_size=1)),
    }
    if draw(st.booleans()):
        attrs["subject"] = draw(st.text(min_size=1))
    if draw(st.booleans()):
        attrs["time"] = draw(rfc3339())
    if draw(st.booleans()):
        attrs["dataschema"] = draw(st.sampled_from(["https://s.example/x", "urn:a:b"]))
    attrs.update(draw(st.dictionaries(ext_name, ext_value, max_size=4)))
    ct = draw(st.none() | st.sampled_from(CONTENT_TYPES))
    if ct is not None:
        attrs["datacontenttype"] = ct
    if ct is not None and "json" in ct.lower() and draw(st.booleans()):
        # orjson's own output, so re-serialising the parsed value gives the same bytes.
        data: bytes | None = orjson.dumps(draw(json_value))
    else:
        data = draw(st.none() | st.binary(max_size=40) | st.text(max_size=20).map(str.encode))
        if data and ct is not None and "json" in ct.lower():
            data = b"\xff" + data  # never valid JSON: such data must travel as base64
    return CloudEvent(attrs, data)


def as_strings(event: CloudEvent) -> dict[str, str]:
    return {k: events.attr_string(v) for k, v in event.attributes.items()}


def raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers]


@given(valid_events())
def test_binary_round_trip(event: CloudEvent) -> None:
    headers, body = events.encode_binary(event)
    [back] = events.decode_http(raw(headers), body)
    assert back.attributes == as_strings(event)
    assert back.data == (event.data or None)


@given(valid_events())
def test_structured_round_trip(event: CloudEvent) -> None:
    headers, body = events.encode_structured(event)
    assert events.decode_http(raw(headers), body) == [event]
    assert events.from_json(events.to_json(event)) == event


@settings(max_examples=40)
@given(st.lists(valid_events(), max_size=3))
def test_batch_round_trip(batch: list[CloudEvent]) -> None:
    for e in batch:
        e.attributes["specversion"] = "1.0"
    body = events.encode_batch(batch)
    ct = [(b"content-type", b"application/cloudevents-batch+json")]
    assert events.decode_http(ct, body) == batch


@given(valid_events())
def test_kafka_round_trip(event: CloudEvent) -> None:
    key, headers, value = events.to_kafka(event)
    back = events.from_kafka(headers, value)
    assert back.attributes == as_strings(event)
    assert back.data == event.data
    pk = event.attributes.get("partitionkey")
    assert key == (None if pk is None else events.attr_string(pk).encode())


# --- arbitrary and mutated requests ------------------------------------------------------------


@st.composite
def mutated_requests(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A valid request in a random mode, then a few random edits: reaches the deep paths that
    purely random input almost never gets past the first check for."""
    event = draw(valid_events())
    mode = draw(st.sampled_from(["binary", "structured", "batch"]))
    if mode == "binary":
        h, payload = events.encode_binary(event)
    elif mode == "structured":
        h, payload = events.encode_structured(event)
    else:
        h, payload = [("content-type", BATCH)], events.encode_batch([event, event])
    headers = raw(h)
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["drop", "replace", "add", "body"]))
        if op == "drop" and headers:
            del headers[draw(st.integers(0, len(headers) - 1))]
        elif op == "replace" and headers:
            i = draw(st.integers(0, len(headers) - 1))
            headers[i] = (headers[i][0], draw(header_value))
        elif op == "add":
            headers.append((draw(header_name), draw(header_value)))
        else:
            i = draw(st.integers(0, len(payload)))
            payload = (
                payload[:i] + draw(st.binary(max_size=4)) + payload[i + draw(st.integers(0, 4)) :]
            )
    return headers, payload


deep_requests = st.tuples(
    st.sampled_from([[(b"content-type", ct.encode())] for ct in CE_TYPES[:3]]), deep_event
)
requests = (
    st.tuples(st.lists(st.tuples(header_name, header_value), max_size=10), body)
    | mutated_requests()
    | deep_requests
)


@given(requests, limits)
def test_decode_http_raises_only_event_error(
    request: tuple[list[tuple[bytes, bytes]], bytes], lim: DecodeLimits
) -> None:
    try:
        decoded = events.decode_http(*request, lim)
    except EventError:
        return
    assert all(isinstance(e, CloudEvent) for e in decoded)


@given(requests)
def test_accepted_events_survive_re_encoding(
    request: tuple[list[tuple[bytes, bytes]], bytes],
) -> None:
    try:
        decoded = events.decode_http(*request)
    except EventError:
        return
    for event in decoded:
        h, b = events.encode_structured(event)
        assert events.decode_http(raw(h), b) == [event]
        h, b = events.encode_binary(event)
        [back] = events.decode_http(raw(h), b)
        assert back.attributes == as_strings(event)
