"""Cross-check core.events against the real `cloudevents` SDK (2.x), in both directions.

The SDK is an independent implementation of the same bindings: what it writes we must read to the
same attributes and data, and what we write it must read back equal. Known SDK quirks the checks
allow for (reference notes §6): it parses `time` into a datetime, adds `time`/`id` when missing,
returns JSON data as Python values and text as str, and writes booleans as `True`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.v03.event import CloudEvent as SdkEvent03
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from kbroker.core import events
from kbroker.core.events import CloudEvent

T = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
T_TEXT = "2024-01-02T03:04:05.123456+02:00"
BASE = {"specversion": "1.0", "id": "id-1", "source": "https://x.example/src", "type": "com.t"}
# %41 would come back as "A" from the SDK's lenient unquote if we forgot to encode '%'.
TRICKY = 'Euro € 😀 "q" 100% %41 a/b?c'


def sdk_event(attrs: dict[str, Any], data: Any, v03: bool = False) -> Any:
    factory = SdkEvent03 if v03 else SdkEvent
    return factory({**BASE, "time": T, **attrs}, data)


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers.items()]


def same_attributes(ours: dict[str, Any], sdk: dict[str, Any]) -> None:
    """Our attributes (as received, time a string) against the SDK's (time a datetime)."""
    assert ours.keys() == sdk.keys()
    for name, value in ours.items():
        if name == "time":
            assert dt.datetime.fromisoformat(str(value)) == sdk[name]
        else:
            assert value == sdk[name], name


def same_data(ours: bytes | None, sdk: Any) -> None:
    if isinstance(sdk, dict | list):
        assert ours is not None
        assert orjson.loads(ours) == sdk
    elif isinstance(sdk, str):
        assert ours == sdk.encode()
    else:
        assert ours == sdk


# Events the SDK can write faithfully: (attributes, data).
SDK_CASES = [
    ({"datacontenttype": "application/json", "subject": TRICKY, "myext": "v"}, {"a": [1, "é"]}),
    ({"datacontenttype": "text/plain; charset=utf-8"}, "Euro € 😀\nline"),
    ({"datacontenttype": "application/octet-stream"}, b"\xff\x00\xfe"),
    ({"dataschema": "https://schema.example/v1", "partitionkey": "pk-1"}, None),
]
SDK_IDS = ["json-percent", "text", "binary-data", "no-data"]


@pytest.mark.parametrize(("attrs", "data"), SDK_CASES, ids=SDK_IDS)
def test_sdk_binary_to_ours(attrs: dict[str, Any], data: Any) -> None:
    sent = sdk_event(attrs, data)
    msg = sdk_http.to_binary_event(sent)
    [ours] = events.decode_http(raw_headers(msg.headers), msg.body)
    same_attributes(ours.attributes, sent.get_attributes())
    same_data(ours.data, data)


@pytest.mark.parametrize(("attrs", "data"), SDK_CASES, ids=SDK_IDS)
def test_sdk_structured_to_ours(attrs: dict[str, Any], data: Any) -> None:
    sent = sdk_event(attrs, data)
    msg = sdk_http.to_structured_event(sent)
    [ours] = events.decode_http(raw_headers(msg.headers), msg.body)
    same_attributes(ours.attributes, sent.get_attributes())
    same_data(ours.data, data)


def test_sdk_structured_typed_extensions_and_implied_json() -> None:
    sent = sdk_event({"n": -7, "flag": True}, {"k": 1})
    msg = sdk_http.to_structured_event(sent)
    [ours] = events.decode_http(raw_headers(msg.headers), msg.body)
    assert ours.attributes["n"] == -7
    assert ours.attributes["flag"] is True
    # No datacontenttype in the SDK's body: the implied application/json is written out.
    assert ours.attributes["datacontenttype"] == "application/json"
    assert orjson.loads(ours.data or b"") == {"k": 1}


def test_sdk_v03_structured_base64_to_ours() -> None:
    sent = sdk_event({"specversion": "0.3"}, b"\x00\x01binary", v03=True)
    msg = sdk_http.to_structured_event(sent)
    [ours] = events.decode_http(raw_headers(msg.headers), msg.body)
    assert ours.data == b"\x00\x01binary"
    assert ours.specversion == "0.3"
    assert ours.attributes["datacontentencoding"] == "base64"


def test_sdk_v03_binary_to_ours() -> None:
    sent = sdk_event(
        {"specversion": "0.3", "schemaurl": "/s", "subject": TRICKY}, b"\xff", v03=True
    )
    msg = sdk_http.to_binary_event(sent)
    [ours] = events.decode_http(raw_headers(msg.headers), msg.body)
    same_attributes(ours.attributes, sent.get_attributes())
    assert ours.data == b"\xff"


@pytest.mark.parametrize(("attrs", "data"), SDK_CASES, ids=SDK_IDS)
def test_sdk_kafka_binary_to_ours(attrs: dict[str, Any], data: Any) -> None:
    sent = sdk_event(attrs, data)
    msg = sdk_kafka.to_binary_event(sent)
    ours = events.from_kafka(list(msg.headers.items()), msg.value or None)
    same_attributes(ours.attributes, sent.get_attributes())
    same_data(ours.data, data)
    assert events.to_kafka(ours)[0] == (msg.key.encode() if isinstance(msg.key, str) else msg.key)


def test_sdk_kafka_structured_to_ours() -> None:
    sent = sdk_event({"subject": TRICKY}, {"a": 1})
    msg = sdk_kafka.to_structured_event(sent)
    ours = events.from_kafka(list(msg.headers.items()), msg.value)
    assert ours.attributes["subject"] == TRICKY
    assert orjson.loads(ours.data or b"") == {"a": 1}


def test_sdk_structured_bodies_as_batch() -> None:
    sent = [sdk_event({"id": f"e{i}", **attrs}, data) for i, (attrs, data) in enumerate(SDK_CASES)]
    body = b"[" + b",".join(sdk_http.to_structured_event(e).body for e in sent) + b"]"
    decoded = events.decode_http([(b"content-type", b"application/cloudevents-batch+json")], body)
    assert len(decoded) == len(sent)
    for ours, theirs, (_, data) in zip(decoded, sent, SDK_CASES, strict=True):
        same_attributes(ours.attributes, theirs.get_attributes())
        same_data(ours.data, data)


# --- ours -> SDK --------------------------------------------------------------------------------

OUR_CASES = [
    CloudEvent(
        {**BASE, "time": T_TEXT, "subject": TRICKY, "datacontenttype": "application/json"},
        b'{"a":[1,"\xc3\xa9"]}',
    ),
    CloudEvent({**BASE, "time": T_TEXT, "datacontenttype": "text/plain"}, "Euro € 😀".encode()),
    CloudEvent({**BASE, "time": T_TEXT, "datacontenttype": "image/png"}, b"\x89PNG\xff\x00"),
    CloudEvent({**BASE, "time": T_TEXT, "myext": "100%", "partitionkey": "k"}, None),
    CloudEvent({**BASE, "time": T_TEXT, "specversion": "0.3", "schemaurl": "/s"}, b"\xff"),
]
OUR_IDS = ["json-percent", "text", "binary-data", "no-data-ext", "v03"]


def sdk_data(event: CloudEvent) -> Any:
    """What the SDK should hand back for our data bytes."""
    if event.data is None:
        return None
    if event.attributes.get("datacontenttype") == "application/json":
        return orjson.loads(event.data)
    if event.attributes.get("datacontenttype") == "text/plain":
        return event.data.decode()
    return event.data


@pytest.mark.parametrize("event", OUR_CASES, ids=OUR_IDS)
def test_ours_binary_to_sdk(event: CloudEvent) -> None:
    headers, body = events.encode_binary(event)
    got = sdk_http.from_http_event(sdk_http.HTTPMessage(headers=dict(headers), body=body))
    same_attributes(event.attributes, got.get_attributes())
    assert got.get_data() == sdk_data(event)


@pytest.mark.parametrize("event", OUR_CASES, ids=OUR_IDS)
def test_ours_structured_to_sdk(event: CloudEvent) -> None:
    headers, body = events.encode_structured(event)
    got = sdk_http.from_structured_event(sdk_http.HTTPMessage(headers=dict(headers), body=body))
    sdk_attrs = dict(got.get_attributes())
    # The SDK leaves data_base64 for 0.3 in place only when it has no datacontentencoding.
    same_attributes(event.attributes, sdk_attrs)
    assert got.get_data() == sdk_data(event)


@pytest.mark.parametrize("event", OUR_CASES, ids=OUR_IDS)
def test_ours_kafka_to_sdk(event: CloudEvent) -> None:
    key, headers, value = events.to_kafka(event)
    msg = sdk_kafka.KafkaMessage(headers=dict(headers), key=key, value=value or b"")
    got = sdk_kafka.from_binary_event(msg)
    same_attributes(event.attributes, got.get_attributes())
    assert got.get_data() == sdk_data(event)


def test_sdk_decodes_our_percent_encoding_exactly() -> None:
    value = "".join(chr(c) for c in range(0x20, 0x7F)) + "é€😀\t%41"
    headers, _ = events.encode_binary(CloudEvent({**BASE, "time": T_TEXT, "x": value}))
    got = sdk_http.from_binary_event(sdk_http.HTTPMessage(headers=dict(headers), body=b""))
    assert got.get_extension("x") == value
