"""HTTP binding and JSON format of core.events, rule by rule (reference notes §1, §7)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from kbroker.core import events
from kbroker.core.events import (
    CloudEvent,
    DecodeLimits,
    EventError,
    PayloadTooLarge,
    UnsupportedMediaType,
)

STRUCTURED = "application/cloudevents+json; charset=utf-8"
BATCH = "application/cloudevents-batch+json"
BASE = {"specversion": "1.0", "id": "1", "source": "/src", "type": "com.example.t"}
BASE_HEADERS = [("ce-" + k, v) for k, v in BASE.items()]


def raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """ASGI-style headers; values go through UTF-8 so tests can send raw non-ASCII bytes too."""
    return [(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in headers]


def binary(*extra: tuple[str, str], body: bytes = b"", limits: DecodeLimits | None = None) -> Any:
    headers = raw(BASE_HEADERS + list(extra))
    decoded = events.decode_http(headers, body, limits or DecodeLimits())
    assert len(decoded) == 1
    return decoded[0]


def structured(obj: Any, limits: DecodeLimits | None = None, ct: str = STRUCTURED) -> CloudEvent:
    decoded = events.decode_http(
        raw([("content-type", ct)]), orjson.dumps(obj), limits or DecodeLimits()
    )
    assert len(decoded) == 1
    return decoded[0]


# --- binary mode: valid ------------------------------------------------------------------------


def test_binary_minimal_has_no_data() -> None:
    event = binary()
    assert event == CloudEvent(dict(BASE), None)


def test_binary_content_type_and_body_byte_exact() -> None:
    body = bytes(range(256))
    event = binary(("Content-Type", "application/octet-stream"), body=body)
    assert event.data == body
    assert event.attributes["datacontenttype"] == "application/octet-stream"


def test_binary_header_names_any_case_and_other_headers_ignored() -> None:
    headers = raw(
        [
            *[("CE-SpecVersion", "1.0"), ("Ce-Id", "x"), ("ce-SOURCE", "/s"), ("cE-type", "t")],
            *[("host", "h"), ("traceparent", "00-1"), ("CONTENT-TYPE", "text/plain")],
        ]
    )
    [event] = events.decode_http(headers, b"hi")
    assert event.attributes == {
        "specversion": "1.0",
        "id": "x",
        "source": "/s",
        "type": "t",
        "datacontenttype": "text/plain",
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro € 😀"),
        ("euro%20%e2%82%ac", "euro €"),
        ("%41%42C", "ABC"),
        ("a%2Fb", "a/b"),
        ("%2525", "%25"),
        ('"quoted value"', "quoted value"),
        ('"a \\"b\\" \\\\ c"', 'a "b" \\ c'),
        ('"100%25"', "100%"),
        ('""', ""),
        ("Euro € raw", "Euro € raw"),
        ("100%", "100%"),
        ("%zz", "%zz"),
        ("50%2", "50%2"),
        ("a%", "a%"),
        ('say "hi"', 'say "hi"'),
    ],
    ids=[
        "spec-example",
        "lower-case-hex",
        "needless-encoding",
        "slash",
        "single-round",
        "quoted",
        "quoted-escapes",
        "quoted-then-percent",
        "quoted-empty",
        "raw-utf8",
        "lenient-trailing-percent",
        "lenient-bad-hex",
        "lenient-short",
        "lenient-end",
        "lenient-inner-quote",
    ],
)
def test_binary_percent_decoding(header: str, expected: str) -> None:
    assert binary(("ce-x", header)).attributes["x"] == expected


def test_binary_time_kept_as_original_string() -> None:
    t = "2018-04-26T14:48:09.123456789+02:00"
    assert binary(("ce-time", t)).attributes["time"] == t


@pytest.mark.parametrize(
    "t",
    [
        "2018-04-26T14:48:09Z",
        "2018-04-26t14:48:09z",
        "2020-02-29T00:00:00-00:00",
        "2000-02-29T00:00:00Z",
        "2016-12-31T23:59:60Z",
        "1990-12-31T15:59:59.1-08:00",
        "0001-01-31T00:00:00+23:59",
    ],
)
def test_valid_times(t: str) -> None:
    assert binary(("ce-time", t)).attributes["time"] == t


def test_binary_v03_and_long_extension_name() -> None:
    name = "averyveryverylongextensionname1"
    headers = [("ce-specversion", "0.3"), ("ce-id", "1"), ("ce-source", "s"), ("ce-type", "t")]
    [event] = events.decode_http(raw([*headers, (f"ce-{name}", "v"), ("ce-schemaurl", "a/b")]), b"")
    assert event.attributes[name] == "v"
    assert event.specversion == "0.3"


def test_binary_json_content_type_is_still_binary() -> None:
    body = b'{"specversion":"1.0"}'
    event = binary(("content-type", "application/json"), body=body)
    assert event.data == body


def test_binary_mode_only_by_content_type_not_by_body() -> None:
    with pytest.raises(EventError, match="specversion"):
        events.decode_http([], orjson.dumps(BASE))


# --- binary mode: invalid ----------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["specversion", "id", "source", "type"])
def test_binary_missing_required(missing: str) -> None:
    headers = raw([h for h in BASE_HEADERS if h[0] != "ce-" + missing])
    with pytest.raises(EventError, match=f"missing required attribute '{missing}'"):
        events.decode_http(headers, b"")


STRICT = DecodeLimits(lenient_percent=False)


@pytest.mark.parametrize(
    ("extra", "reason", "limits"),
    [
        ([("ce-specversion", "2.0")], "repeated", None),
        ([("ce-myext", "1"), ("CE-MYEXT", "2")], "repeated", None),
        ([("ce-my_ext", "x")], "invalid attribute name", None),
        ([("ce-my-ext", "x")], "invalid attribute name", None),
        ([("ce-", "x")], "invalid attribute name", None),
        ([("ce-data", "x")], "invalid attribute name", None),
        ([("ce-datacontenttype", "text/plain")], "datacontenttype", None),
        ([("ce-subject", "%C0%A0")], "UTF-8", None),
        ([("ce-subject", "%FF")], "UTF-8", None),
        ([("ce-subject", "%ED%A0%80")], "UTF-8", None),
        ([("ce-subject", "\udcff")], "UTF-8", None),
        ([("ce-subject", "")], "'subject' must not be empty", None),
        ([("content-type", "")], "'datacontenttype' must not be empty", None),
        ([("ce-dataschema", "/relative")], "absolute URI", None),
        ([("ce-dataschema", "")], "absolute URI", None),
        ([("ce-subject", "100%")], "malformed percent", STRICT),
        ([("ce-subject", "%G0")], "malformed percent", STRICT),
        ([("ce-subject", 'a"b')], "percent-encoded", STRICT),
        ([("ce-subject", '"a"b"')], "quoted-string", None),
        ([("ce-subject", '"ab\\"')], "backslash", None),
    ],
    ids=[
        "duplicate-specversion",
        "duplicate-ext-any-case",
        "underscore-name",
        "dash-name",
        "empty-name",
        "name-data",
        "ce-datacontenttype",
        "overlong-C0A0",
        "lone-FF",
        "encoded-surrogate",
        "raw-invalid-utf8",
        "empty-subject",
        "empty-content-type",
        "relative-dataschema",
        "empty-dataschema",
        "strict-trailing-percent",
        "strict-bad-hex",
        "strict-raw-quote",
        "malformed-quoted",
        "quoted-lone-backslash",
    ],
)
def test_binary_invalid(
    extra: list[tuple[str, str]], reason: str, limits: DecodeLimits | None
) -> None:
    with pytest.raises(EventError, match=reason) as info:
        binary(*extra, limits=limits)
    assert type(info.value) is EventError


def test_extension_names_are_checked_on_every_request() -> None:
    # Valid extension headers are remembered; a refused one must stay refused, not be cached.
    for _ in range(3):
        assert binary(("ce-myext", "1")).attributes["myext"] == "1"
        with pytest.raises(EventError, match="invalid attribute name"):
            binary(("ce-my_ext", "1"))


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        ("specversion", "1.0-rc1"),
        ("specversion", "0.2"),
        ("id", ""),
        ("source", ""),
        ("type", ""),
        ("time", "2018-04-26T14:48:09"),
        ("time", "2018-04-26 14:48:09Z"),
        ("time", "2021-02-29T00:00:00Z"),
        ("time", "2100-02-29T00:00:00Z"),
        ("time", "2020-04-31T00:00:00Z"),
        ("time", "2020-13-01T00:00:00Z"),
        ("time", "2020-01-01T24:00:00Z"),
        ("time", "2020-01-01T00:60:00Z"),
        ("time", "2020-01-01T00:00:61Z"),
        ("time", "2020-01-01T00:00:00+24:00"),
        ("time", "2020-01-01T00:00:00.Z"),
        ("time", "\uff12\uff10\uff12\uff10-01-01T00:00:00Z"),  # full-width digits
        ("time", "2020-01-01T00:00:00Z\n"),
    ],
)
def test_binary_invalid_values(attr: str, value: str) -> None:
    headers = raw([h for h in BASE_HEADERS if h[0] != "ce-" + attr] + [("ce-" + attr, value)])
    with pytest.raises(EventError):
        events.decode_http(headers, b"")


def test_binary_v03_datacontentencoding_must_be_base64() -> None:
    v03 = [("ce-specversion", "0.3"), ("ce-id", "1"), ("ce-source", "s"), ("ce-type", "t")]
    [event] = events.decode_http(raw([*v03, ("ce-datacontentencoding", "BASE64")]), b"\x00")
    assert event.attributes["datacontentencoding"] == "BASE64"
    assert events.to_json(event)["data"] == "AA=="
    with pytest.raises(EventError, match="datacontentencoding"):
        events.decode_http(raw([*v03, ("ce-datacontentencoding", "gzip")]), b"")


def test_binary_header_count_cap() -> None:
    extra = [(f"ce-x{i}", "v") for i in range(3)]
    assert binary(*extra, limits=DecodeLimits(max_attributes=7))
    with pytest.raises(EventError, match="over the limit") as info:
        binary(*extra, limits=DecodeLimits(max_attributes=6))
    assert type(info.value) is EventError


def test_body_and_event_caps() -> None:
    with pytest.raises(PayloadTooLarge):
        binary(body=b"x" * 11, limits=DecodeLimits(max_body_bytes=10))
    with pytest.raises(PayloadTooLarge, match="event"):
        binary(body=b"x" * 100, limits=DecodeLimits(max_event_bytes=120))
    assert binary(body=b"x" * 100, limits=DecodeLimits(max_event_bytes=200)).data == b"x" * 100


# --- structured mode ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "attrs", "data"),
    [
        ({"datacontenttype": "application/json", "data": {"a": [1, 2]}}, {}, b'{"a":[1,2]}'),
        ({"data": "text"}, {"datacontenttype": "application/json"}, b'"text"'),
        ({"data": None}, {"datacontenttype": "application/json"}, b"null"),
        ({"datacontenttype": "TEXT/JSON", "data": 1.5}, {}, b"1.5"),
        ({"datacontenttype": "application/vnd.x+json; v=1", "data": [True]}, {}, b"[true]"),
        ({"datacontenttype": "text/plain", "data": "Euro € 😀"}, {}, "Euro € 😀".encode()),
        ({"datacontenttype": "application/xml", "data": "<a/>"}, {}, b"<a/>"),
        ({"datacontenttype": "text/plain", "data": None}, {}, None),
        ({"data_base64": "AAEC/w=="}, {}, b"\x00\x01\x02\xff"),
        ({"datacontenttype": "application/json", "data_base64": "e30="}, {}, b"{}"),
        ({"data_base64": None, "subject": None}, {}, None),
        ({"myint": -(2**31), "mybool": False, "mystr": "x"}, {}, None),
        ({"time": "2018-04-26T14:48:09+02:00"}, {}, None),
        ({"specversion": "0.3", "datacontentencoding": "base64", "data": "aGk="}, {}, b"hi"),
        (
            {"specversion": "0.3", "schemaurl": "/s", "data": {"k": 1}},
            {"datacontenttype": "application/json"},
            b'{"k":1}',
        ),
    ],
    ids=[
        "json-object",
        "implied-json-string",
        "json-null",
        "json-upper-case-type",
        "json-suffix-with-params",
        "text",
        "xml-string",
        "text-null",
        "base64-no-type",
        "base64-json-type",
        "null-members-absent",
        "typed-extensions",
        "time-offset-kept",
        "v03-base64",
        "v03-json",
    ],
)
def test_structured_valid(
    members: dict[str, Any], attrs: dict[str, Any], data: bytes | None
) -> None:
    event = structured({**BASE, **members})
    expected = {**BASE, **{k: v for k, v in members.items() if v is not None}, **attrs}
    expected.pop("data", None)
    expected.pop("data_base64", None)
    assert event.attributes == expected
    assert event.data == data


@pytest.mark.parametrize(
    "ct",
    [
        "application/cloudevents+json",
        "Application/CloudEvents+JSON; charset=UTF-8",
        "  application/cloudevents+json ;charset=utf-8",
    ],
)
def test_structured_content_type_spellings(ct: str) -> None:
    assert structured(BASE, ct=ct) == CloudEvent(dict(BASE))


def test_structured_body_wins_over_ce_headers() -> None:
    headers = raw([("content-type", STRUCTURED), ("ce-id", "header"), ("ce-specversion", "9")])
    [event] = events.decode_http(headers, orjson.dumps(BASE))
    assert event.id == "1"


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({**BASE, "data": 1, "data_base64": "AA=="}, "both"),
        ({**BASE, "myobj": {}}, "invalid value type"),
        ({**BASE, "myarr": [1]}, "invalid value type"),
        ({**BASE, "myfloat": 1.0}, "invalid value type"),
        ({**BASE, "big": 2**31}, "int32"),
        ({**BASE, "small": -(2**31) - 1}, "int32"),
        ({**BASE, "id": 1}, "must be a string"),
        ({**BASE, "source": True}, "must be a string"),
        ({**BASE, "time": 0}, "must be a string"),
        ({**BASE, "specversion": 1.0}, "must be a string"),
        ({**BASE, "Upper": "x"}, "invalid attribute name"),
        ({**BASE, "": "x"}, "invalid attribute name"),
        ({**BASE, "é": "x"}, "invalid attribute name"),
        ({**BASE, "data_base64": "not base64!"}, "base64"),
        ({**BASE, "data_base64": 5}, "base64"),
        ({**BASE, "datacontenttype": "text/plain", "data": {"a": 1}}, "must be a string"),
        ({**BASE, "specversion": "0.3", "datacontentencoding": "gzip", "data": "x"}, "gzip"),
        ({**BASE, "subject": ""}, "subject"),
        ({**BASE, "datacontenttype": ""}, "datacontenttype"),
        ({**BASE, "time": "now"}, "RFC 3339"),
        ({k: v for k, v in BASE.items() if k != "id"}, "'id'"),
        ({**BASE, "specversion": None}, "'specversion'"),
        ([BASE], "JSON object"),
        ("event", "JSON object"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_structured_invalid(obj: Any, reason: str) -> None:
    with pytest.raises(EventError, match=reason):
        structured(obj)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"\xef\xbb\xbf{}", b"NaN", b'{"a":1e400}', b"[" * 5000 + b"]" * 5000],
    ids=["empty", "truncated", "bom", "nan", "inf", "deep-array"],
)
def test_structured_malformed_json(body: bytes) -> None:
    with pytest.raises(EventError, match="malformed JSON"):
        events.decode_http(raw([("content-type", STRUCTURED)]), body)


def test_json_depth_limit() -> None:
    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value

    limits = DecodeLimits(max_json_depth=5)
    # The event object is level 1, so data may nest 4 levels.
    assert structured({**BASE, "data": nested(4)}, limits).data == b"[[[[1]]]]"
    with pytest.raises(EventError, match="deeper than 5"):
        structured({**BASE, "data": nested(5)}, limits)
    with pytest.raises(EventError, match="deeper"):
        structured({**BASE, "data": {"a": nested(200)}})
    bomb = b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":' + b'{"a":' * 2000
    with pytest.raises(EventError):
        events.decode_http(raw([("content-type", STRUCTURED)]), bomb + b"1" + b"}" * 2001)


def test_depth_beyond_what_orjson_can_serialise() -> None:
    deep = b"[" * 300 + b"]" * 300
    body = orjson.dumps(BASE)[:-1] + b',"data":' + deep + b"}"
    headers = raw([("content-type", STRUCTURED)])
    with pytest.raises(EventError, match="serialised"):
        events.decode_http(headers, body, DecodeLimits(max_json_depth=1000))


INT_KEY: dict[Any, Any] = {**BASE, 1: "x"}


@pytest.mark.parametrize(
    "obj",
    [INT_KEY, {**BASE, "data": {1, 2}}, {**BASE, "x": object()}],
    ids=["int-key", "set-data", "object-value"],
)
def test_from_json_on_python_objects(obj: Any) -> None:
    with pytest.raises(EventError):
        events.from_json(obj)


@pytest.mark.parametrize(
    "ct",
    [
        "application/cloudevents+avro",
        "application/cloudevents+xml; charset=utf-8",
        "application/cloudevents",
        "application/cloudevents-batch+avro",
        "application/cloudevents-batch",
    ],
)
def test_unsupported_format(ct: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        events.decode_http(raw([("content-type", ct)]), orjson.dumps(BASE))


def test_structured_event_cap() -> None:
    body = orjson.dumps({**BASE, "data": "x" * 200})
    with pytest.raises(PayloadTooLarge):
        events.decode_http(
            raw([("content-type", STRUCTURED)]), body, DecodeLimits(max_event_bytes=200)
        )


# --- batch mode --------------------------------------------------------------------------------


def batch(objs: Any, limits: DecodeLimits | None = None) -> list[CloudEvent]:
    return events.decode_http(
        raw([("content-type", BATCH)]), orjson.dumps(objs), limits or DecodeLimits()
    )


def test_batch_valid_in_order_with_mixed_content_types() -> None:
    objs = [
        {**BASE, "id": "a", "datacontenttype": "text/plain", "data": "t"},
        {**BASE, "id": "b", "data": {"x": 1}},
        {**BASE, "id": "c", "data_base64": "AA=="},
    ]
    decoded = batch(objs)
    assert [e.id for e in decoded] == ["a", "b", "c"]
    assert [e.data for e in decoded] == [b"t", b'{"x":1}', b"\x00"]


def test_empty_batch() -> None:
    assert batch([]) == []


@pytest.mark.parametrize(
    ("objs", "index", "reason"),
    [
        ([BASE, BASE, {**BASE, "id": ""}], 2, "'id'"),
        ([{**BASE, "x": 1.5}], 0, "invalid value type"),
        ([BASE, {**BASE, "specversion": "0.3"}], 1, "specversion differs"),
        ([BASE, 5], 1, "JSON object"),
    ],
)
def test_batch_invalid_names_index(objs: list[Any], index: int, reason: str) -> None:
    with pytest.raises(EventError, match=reason) as info:
        batch(objs)
    assert info.value.index == index
    assert str(info.value).startswith(f"event {index}: ")
    assert type(info.value) is EventError


def test_batch_not_an_array() -> None:
    with pytest.raises(EventError, match="array"):
        batch(BASE)


def test_batch_caps() -> None:
    with pytest.raises(PayloadTooLarge):
        batch([BASE] * 4, DecodeLimits(max_batch_events=3))
    assert len(batch([BASE] * 3, DecodeLimits(max_batch_events=3))) == 3
    body = orjson.dumps([BASE] * 4)
    with pytest.raises(PayloadTooLarge):
        events.decode_http(
            raw([("content-type", BATCH)]), body, DecodeLimits(max_body_bytes=len(body) - 1)
        )
    with pytest.raises(PayloadTooLarge) as info:
        batch([BASE, {**BASE, "data": "x" * 300}], DecodeLimits(max_event_bytes=300))
    assert info.value.index == 1


# --- encoding ----------------------------------------------------------------------------------


def test_encode_binary_headers_and_percent_encoding() -> None:
    event = CloudEvent(
        {
            **BASE,
            "subject": 'Euro € 😀 "q" 100%',
            "source": "https://x.example/a?b=c&d#e",
            "n": 7,
            "flag": False,
            "datacontenttype": "text/plain; charset=utf-8",
        },
        b"body",
    )
    headers, body = events.encode_binary(event)
    assert body == b"body"
    assert dict(headers) == {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "https://x.example/a?b=c&d#e",
        "ce-type": "com.example.t",
        "ce-subject": "Euro%20%E2%82%AC%20%F0%9F%98%80%20%22q%22%20100%25",
        "ce-n": "7",
        "ce-flag": "false",
        "content-type": "text/plain; charset=utf-8",
    }
    [back] = events.decode_http(raw(headers), body)
    assert back.attributes == {**event.attributes, "n": "7", "flag": "false"}


def test_encode_binary_controls_and_no_data() -> None:
    headers, body = events.encode_binary(CloudEvent({**BASE, "x": "a\tb\x7f\x85"}))
    assert ("ce-x", "a%09b%7F%C2%85") in headers
    assert body == b""
    assert all(name != "content-type" for name, _ in headers)


def test_structured_to_binary_writes_implied_json() -> None:
    event = structured({**BASE, "data": "a string"})
    headers, body = events.encode_binary(event)
    assert ("content-type", "application/json") in headers
    assert body == b'"a string"'


def test_structured_base64_without_type_to_binary_has_no_content_type() -> None:
    event = structured({**BASE, "data_base64": "3q2+7w=="})
    headers, body = events.encode_binary(event)
    assert body == b"\xde\xad\xbe\xef"
    assert all(name != "content-type" for name, _ in headers)


@pytest.mark.parametrize(
    ("attrs", "data", "member", "value"),
    [
        ({"datacontenttype": "application/json"}, b'{"a": [1, 2.5]}', "data", {"a": [1, 2.5]}),
        ({"datacontenttype": "application/json"}, b'"s"', "data", "s"),
        ({"datacontenttype": "application/json"}, b"not json", "data_base64", "bm90IGpzb24="),
        ({"datacontenttype": "text/plain"}, "é".encode(), "data", "é"),
        ({"datacontenttype": "text/plain"}, b"\xff", "data_base64", "/w=="),
        ({"datacontenttype": "image/png"}, b"\x89PNG", "data_base64", "iVBORw=="),
        ({}, b"{}", "data_base64", "e30="),
        ({"specversion": "0.3", "datacontentencoding": "base64"}, b"hi", "data", "aGk="),
    ],
    ids=[
        "json",
        "json-string",
        "bad-json",
        "text",
        "text-not-utf8",
        "binary",
        "no-type",
        "v03-b64",
    ],
)
def test_to_json_data_members(attrs: dict[str, Any], data: bytes, member: str, value: Any) -> None:
    event = CloudEvent({**BASE, **attrs}, data)
    obj = events.to_json(event)
    assert obj[member] == value
    assert ({"data", "data_base64"} - {member}).isdisjoint(obj)
    assert events.from_json(obj).attributes == event.attributes


def test_encode_structured_splices_json_bytes_exactly() -> None:
    data = b'{ "b" : 1,\n "a": [1.50, "\\u00e9"] }'
    event = CloudEvent({**BASE, "datacontenttype": "application/json"}, data)
    headers, body = events.encode_structured(event)
    assert headers == [("content-type", STRUCTURED)]
    assert body.endswith(b',"data":' + data + b"}")
    [back] = events.decode_http(raw(headers), body)
    assert orjson.loads(back.data or b"") == orjson.loads(data)
    assert back.attributes == event.attributes


def test_encode_structured_too_deep_json_goes_base64() -> None:
    data = b"[" * 100 + b"]" * 100
    event = CloudEvent({**BASE, "datacontenttype": "application/json"}, data)
    obj = orjson.loads(events.encode_structured(event)[1])
    assert "data_base64" in obj
    assert events.decode_http(raw([("content-type", STRUCTURED)]), orjson.dumps(obj))[0] == event


@pytest.mark.parametrize(
    "event",
    [
        CloudEvent(dict(BASE)),
        CloudEvent({**BASE, "datacontenttype": "application/octet-stream"}, bytes(range(256))),
        CloudEvent({**BASE, "datacontenttype": "text/plain"}, "Euro € 😀\n".encode()),
        CloudEvent({**BASE, "datacontenttype": "application/json"}, b'{"a":1}'),
        CloudEvent({**BASE, "datacontenttype": "application/json"}, b"null"),
        CloudEvent({**BASE}, b"\x00raw"),
        CloudEvent({**BASE, "datacontenttype": "text/plain"}, b""),
        CloudEvent({**BASE, "specversion": "0.3", "datacontentencoding": "base64"}, b"\x01"),
    ],
    ids=["no-data", "bytes", "text", "json", "json-null", "no-type", "empty-text", "v03"],
)
def test_round_trips_byte_exact(event: CloudEvent) -> None:
    h, body = events.encode_binary(event)
    [b] = events.decode_http(raw(h), body)
    sent_decoded = {k: v for k, v in event.attributes.items() if k != "datacontentencoding"}
    assert b.attributes == sent_decoded
    assert b.data == (event.data or None)
    h, body = events.encode_structured(event)
    assert events.decode_http(raw(h), body) == [event]
    assert events.from_json(events.to_json(event)) == event
    _, kh, value = events.to_kafka(event)
    assert events.from_kafka(kh, value) == CloudEvent(sent_decoded, event.data)


def test_encode_batch_round_trip() -> None:
    batch_events = [
        CloudEvent({**BASE, "id": str(i), "datacontenttype": "text/plain"}, b"x" * i)
        for i in range(4)
    ]
    body = events.encode_batch(batch_events)
    assert events.decode_http(raw([("content-type", BATCH)]), body) == batch_events
    assert events.encode_batch([]) == b"[]"


def test_cloud_event_accessors() -> None:
    event = binary(("ce-ext", "v"))
    assert (event.id, event.source, event.type, event.specversion) == (
        "1",
        "/src",
        "com.example.t",
        "1.0",
    )
    assert (event.get("ext"), event.get("absent")) == ("v", None)


def test_v03_empty_schemaurl() -> None:
    with pytest.raises(EventError, match="schemaurl"):
        structured({**BASE, "specversion": "0.3", "schemaurl": ""})


def test_attr_string() -> None:
    assert [events.attr_string(v) for v in (True, False, 0, -5, "s")] == [
        "true",
        "false",
        "0",
        "-5",
        "s",
    ]


def test_v03_base64_event_goes_out_decoded_without_its_encoding() -> None:
    """Binary mode (HTTP and Kafka) carries the decoded bytes, so `datacontentencoding` would tell
    the receiver to decode them a second time: it is dropped there, and kept in structured mode."""
    body = orjson.dumps(
        {**BASE, "specversion": "0.3", "datacontentencoding": "base64", "data": "aGk="}
    )
    [event] = events.decode_http(raw([("content-type", "application/cloudevents+json")]), body)
    headers, data = events.encode_binary(event)
    assert data == b"hi"
    assert "ce-datacontentencoding" not in dict(headers)
    _, kafka_headers, value = events.to_kafka(event)
    assert value == b"hi"
    assert "ce_datacontentencoding" not in dict(kafka_headers)
    _, structured = events.encode_structured(event)
    assert orjson.loads(structured)["datacontentencoding"] == "base64"
    assert orjson.loads(structured)["data"] == "aGk="


# datacontenttype is written out verbatim as the Content-Type header whenever the event is
# delivered in binary mode: a CR or LF in it would end that header and let the sender of a
# structured event (or of a Kafka record) add headers, or a whole request, of its own.
@pytest.mark.parametrize(
    "ctype",
    [
        "text/plain\r\nX-Injected: 1",
        "text/plain\nX-Injected: 1",
        "text/plain\r",
        "\x00text/plain",
        "text/plain\x7f",
        "text/plain; a=\x1b",
    ],
    ids=["crlf", "lf", "cr", "nul", "del", "esc"],
)
def test_datacontenttype_with_control_characters_is_rejected(ctype: str) -> None:
    with pytest.raises(EventError, match=r"datacontenttype.*control character"):
        structured({**BASE, "datacontenttype": ctype, "data": "x"})
    kafka = [(f"ce_{k}", str(v).encode()) for k, v in BASE.items()]
    with pytest.raises(EventError, match=r"datacontenttype.*control character"):
        events.from_kafka([*kafka, ("content-type", ctype.encode())], b"x")


def test_datacontenttype_may_hold_a_tab() -> None:
    event = structured({**BASE, "datacontenttype": "text/plain;\tcharset=utf-8", "data": "x"})
    assert events.encode_binary(event)[0][-1] == ("content-type", "text/plain;\tcharset=utf-8")
