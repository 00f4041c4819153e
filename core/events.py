"""CloudEvent value and its sans-IO codecs: HTTP (binary, structured, batch), Kafka, NATS.

Why our own codec rather than the `cloudevents` SDK: the SDK invents attributes (`id`, `time`),
rewrites `time`, mis-detects the content mode and decodes percent-encoding leniently
(it serves applications, not forwarders). A broker must forward what it received, unchanged, and
reject what is invalid with a message naming the problem. The SDK is used in tests only, as an
independent encoder/decoder to cross-check this module in both directions.

The value keeps attributes as received: strings from binary mode, and JSON booleans/integers from
structured mode; `time` stays the sender's text. `data` is always bytes, exactly what a binary-mode
body would carry. One consequence: a structured event with JSON `data` and no `datacontenttype`
decodes with `datacontenttype: application/json` written out, because the binary form of that
data needs that Content-Type (spec: re-encoding structured -> binary); `data_base64` with no type
stays untyped. Encoding data that has no type always uses `data_base64` (never assume JSON).

Decisions: the mode comes from Content-Type only, batch prefix first; a
repeated `ce-` header and `ce-datacontenttype` are rejected; a malformed `%` sequence is kept
literally when `DecodeLimits.lenient_percent` (Go/Java senders do not encode), else rejected;
invalid UTF-8 is always rejected. Kafka headers are not percent-encoded, the last of a repeated
key wins, and the record key is never turned into a `partitionkey`.

Caps are about the event, whatever the mode: `max_event_bytes` applies to the decoded event
(a structured body may be up to twice that, so base64 data that fits in binary mode fits here
too), and `max_attributes`/`max_attribute_bytes` bound the attributes as binary mode would send
them, so every accepted event can be delivered as headers (and taken back as a reply, or as a
dead letter) within the ingress's own header limits. The broker's own extensions (arrival time,
TTL, dead-letter errors) are not counted: the broker adds them on the way.

Errors:

    EventError (ValueError)        400: not a valid CloudEvent; `index` names the batch element
     +-- UnsupportedMediaType      415: a CloudEvents format other than JSON
     +-- PayloadTooLarge           413: over the event or batch caps
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kbroker.core import _jsonformat, _percent, _validate

AttrValue = str | int | bool


class EventError(ValueError):
    """The input is not a valid CloudEvent (or batch); the message names the problem."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message if index is None else f"event {index}: {message}")
        self.reason = message
        self.index = index


class UnsupportedMediaType(EventError):
    """A CloudEvents format or content mode this codec does not read."""


class PayloadTooLarge(EventError):
    """Over the configured per-event, per-batch or body caps."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_event_bytes: int = 1024 * 1024
    max_batch_events: int = 1000
    max_body_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 64
    max_attributes: int = 100  # attributes per event, any mode (broker's own not counted)
    max_attribute_bytes: int = 48 * 1024  # names + values as binary-mode ce- headers
    lenient_percent: bool = True  # keep a malformed %-sequence literally (Go/Java SDKs send raw)


@dataclass(slots=True)
class CloudEvent:
    """A CloudEvent: context attributes (required, optional and extensions) plus data bytes."""

    attributes: dict[str, AttrValue]
    data: bytes | None = None

    @property
    def id(self) -> str:
        return str(self.attributes["id"])

    @property
    def type(self) -> str:
        return str(self.attributes["type"])

    @property
    def source(self) -> str:
        return str(self.attributes["source"])

    @property
    def specversion(self) -> str:
        return str(self.attributes["specversion"])

    def get(self, name: str) -> AttrValue | None:
        return self.attributes.get(name)


def attr_string(value: AttrValue) -> str:
    """Canonical string form of an attribute value (booleans lower-case, integers decimal)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


_DEFAULTS = DecodeLimits()
# A record already in Kafka passed a producer's caps; reading it back must not apply new ones.
_KAFKA_LIMITS = DecodeLimits(
    max_event_bytes=2**62, max_body_bytes=2**62, max_attributes=2**62, max_attribute_bytes=2**62
)
# Extensions the broker itself sets on the way (arrival time, TTL, and the dead-letter error
# extensions, whose data is capped at 1 KiB): not the sender's to count, so an event at the caps
# can still be dead-lettered to a broker. The header limits leave room for them.
_BROKER_ATTRIBUTES = frozenset(
    (
        "knativearrivaltime",
        "knativebrokerttl",
        "knativeerrordest",
        "knativeerrorcode",
        "knativeerrordata",
    )
)
_BROKER_HEADERS = frozenset(b"ce-" + n.encode() for n in _BROKER_ATTRIBUTES)
# Worst case growth of one character as a percent-encoded header value (4 UTF-8 bytes, %XX each).
_PERCENT_GROWTH = 12
_STRUCTURED = "application/cloudevents+json"
_BATCH = "application/cloudevents-batch+json"
_STRUCTURED_CT = _STRUCTURED + "; charset=utf-8"
_CE_PREFIX = b"application/cloudevents"
# Header name -> attribute name for the standard attributes: the hot path skips decoding and
# validating the names nearly every event uses.
_KNOWN_HEADERS = {
    b"ce-" + name.encode(): name for name in _validate.STRING_TYPED if name != "datacontenttype"
}


def _event_size(attrs: dict[str, AttrValue], data: bytes | None) -> int:
    size = len(data) if data is not None else 0
    for name, value in attrs.items():
        # Nearly every value is a string already: skip the canonical-form call for those.
        size += len(name) + (len(value) if type(value) is str else len(attr_string(value)))
    return size


def _too_large(what: str, size: int, cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"{what} of {size} bytes is over the {cap}-byte limit")


# --- HTTP ------------------------------------------------------------------------------------


def decode_http(
    headers: Iterable[tuple[bytes, bytes]], body: bytes, limits: DecodeLimits = DecodeLimits()
) -> list[CloudEvent]:
    """Decode an HTTP request or response (ASGI-style raw headers) into one event or a batch."""
    if len(body) > limits.max_body_bytes:
        raise _too_large("body", len(body), limits.max_body_bytes)
    # One pass over the headers: the mode depends on Content-Type only (spec 3.1), but the ce-
    # headers are collected on the way so the common binary case never looks twice.
    ce: list[tuple[bytes, bytes]] = []
    ctype: bytes | None = None
    for name, value in headers:
        lname = name.lower()
        if lname.startswith(b"ce-"):
            ce.append((lname, value))
        elif lname == b"content-type":
            ctype = value
    if ctype is not None and ctype.lstrip()[:23].lower() == _CE_PREFIX:
        return _decode_formatted(ctype, body, limits)
    return [_decode_binary(ce, ctype, body, limits)]


@functools.lru_cache(maxsize=1024)
def _extension_name(name: str, prefix: str) -> str:
    """A `ce-`/`ce_` header's attribute name, validated. Cached: producers send the same few
    extensions on every request, and the check was ~1.5 µs per header; invalid names raise, and
    exceptions are not cached."""
    if not _validate.valid_name(name):
        raise ValueError(f"invalid attribute name {name!r}")
    if name == "datacontenttype":
        raise ValueError(f"{prefix}datacontenttype is not allowed; use the content-type header")
    return name


def _decode_binary(
    ce: list[tuple[bytes, bytes]], ctype: bytes | None, body: bytes, limits: DecodeLimits
) -> CloudEvent:
    if len(ce) > limits.max_attributes:
        counted = sum(1 for n, _ in ce if n not in _BROKER_HEADERS)
        if counted > limits.max_attributes:
            raise EventError(f"{counted} ce- headers, over the limit of {limits.max_attributes}")
    attrs: dict[str, AttrValue] = {}
    size = len(body)
    lenient = limits.lenient_percent
    known = _KNOWN_HEADERS
    try:
        for lname, raw in ce:
            name = known.get(lname)
            if name is None:
                name = _extension_name(lname[3:].decode("latin-1"), "ce-")
            if name in attrs:
                raise ValueError(f"header ce-{name} repeated")
            # Fast path: nothing to unquote or percent-decode in the usual header.
            if b"%" in raw or b'"' in raw:
                attrs[name] = _percent.decode(raw, lenient)
            else:
                attrs[name] = raw.decode("utf-8")
            size += len(lname) + len(raw)
        if ctype is not None:
            attrs["datacontenttype"] = ctype.decode("utf-8")
        _validate.check(attrs)
    except UnicodeDecodeError:
        raise EventError("header value is not valid UTF-8") from None
    except ValueError as e:
        raise EventError(str(e)) from None
    if size > limits.max_event_bytes:
        raise _too_large("event", size, limits.max_event_bytes)
    if size - len(body) > limits.max_attribute_bytes:
        own = sum(len(n) + len(v) for n, v in ce if n in _BROKER_HEADERS)
        if size - len(body) - own > limits.max_attribute_bytes:
            raise _too_large("attributes", size - len(body) - own, limits.max_attribute_bytes)
    return CloudEvent(attrs, body or None)


def _decode_formatted(ctype: bytes, body: bytes, limits: DecodeLimits) -> list[CloudEvent]:
    media = _jsonformat.media_type(ctype.decode("latin-1"))
    if media == _STRUCTURED:
        # The event cap applies to the decoded event (below); the body may carry it base64- or
        # JSON-escaped, so its own cap allows for that encoding.
        if len(body) > 2 * limits.max_event_bytes:
            raise _too_large("structured body", len(body), 2 * limits.max_event_bytes)
        return [from_json(_loads(body), limits)]
    if media != _BATCH:
        raise UnsupportedMediaType(f"unsupported CloudEvents format {media!r}")
    array = _loads(body)
    if type(array) is not list:
        raise EventError("a batch must be a JSON array")
    if len(array) > limits.max_batch_events:
        raise PayloadTooLarge(
            f"batch of {len(array)} events is over the limit of {limits.max_batch_events}"
        )
    events: list[CloudEvent] = []
    for index, obj in enumerate(array):
        try:
            event = from_json(obj, limits)
        except EventError as e:
            raise type(e)(e.reason, index=index) from None
        if events and event.attributes["specversion"] != events[0].attributes["specversion"]:
            raise EventError("specversion differs from the batch's first event", index=index)
        events.append(event)
    return events


def _loads(body: bytes) -> Any:
    try:
        return _jsonformat.loads(body)
    except ValueError as e:
        raise EventError(str(e)) from None


def encode_binary(event: CloudEvent) -> tuple[list[tuple[str, str]], bytes]:
    """Binary content mode: `ce-` headers (percent-encoded) plus Content-Type, body = data."""
    headers: list[tuple[str, str]] = []
    ctype: str | None = None
    for name, value in event.attributes.items():
        if name == "datacontenttype":
            ctype = attr_string(value)
        elif name != "datacontentencoding":  # the body is the decoded data: nothing to undo
            headers.append(("ce-" + name, _percent.encode(attr_string(value))))
    if ctype is not None:
        headers.append(("content-type", ctype))
    return headers, event.data or b""


def encode_structured(event: CloudEvent) -> tuple[list[tuple[str, str]], bytes]:
    """Structured content mode, JSON format."""
    body = _jsonformat.encode(event.attributes, event.data, _DEFAULTS.max_json_depth)
    return [("content-type", _STRUCTURED_CT)], body


def encode_batch(events: Sequence[CloudEvent]) -> bytes:
    """Batch content mode body (`application/cloudevents-batch+json`)."""
    depth = _DEFAULTS.max_json_depth
    return b"[" + b",".join(_jsonformat.encode(e.attributes, e.data, depth) for e in events) + b"]"


# --- JSON format -----------------------------------------------------------------------------


def to_json(event: CloudEvent) -> dict[str, Any]:
    """The JSON-format object of one event."""
    return _jsonformat.to_dict(event.attributes, event.data, _DEFAULTS.max_json_depth)


def from_json(obj: Any, limits: DecodeLimits = DecodeLimits()) -> CloudEvent:
    """Parse and validate one JSON-format event object."""
    try:
        attrs, data = _jsonformat.parse_event(obj, limits.max_json_depth)
    except ValueError as e:
        raise EventError(str(e)) from None
    size = _event_size(attrs, data)
    if size > limits.max_event_bytes:
        raise _too_large("event", size, limits.max_event_bytes)
    if len(attrs) > limits.max_attributes:
        counted = sum(1 for n in attrs if n not in _BROKER_ATTRIBUTES)
        if counted > limits.max_attributes:
            raise EventError(f"{counted} attributes, over the limit of {limits.max_attributes}")
    chars = size - (len(data) if data is not None else 0)
    if chars * _PERCENT_GROWTH + 3 * len(attrs) > limits.max_attribute_bytes:
        # Rare (attributes over a few KiB): measure them as binary mode would send them.
        sent = _header_bytes(attrs)
        if sent > limits.max_attribute_bytes:
            raise _too_large("attributes", sent, limits.max_attribute_bytes)
    return CloudEvent(attrs, data)


def _header_bytes(attrs: dict[str, AttrValue]) -> int:
    """Bytes of the ce- headers binary mode would send (name and percent-encoded value)."""
    return sum(
        3 + len(name) + len(_percent.encode(attr_string(value)))
        for name, value in attrs.items()
        if name not in _BROKER_ATTRIBUTES and name != "datacontenttype"
    )


# --- Kafka -----------------------------------------------------------------------------------


def to_kafka(event: CloudEvent) -> tuple[bytes | None, list[tuple[str, bytes]], bytes | None]:
    """Kafka binary binding: (key from partitionkey, `ce_` headers + content-type, value)."""
    headers: list[tuple[str, bytes]] = []
    for name, value in event.attributes.items():
        if name == "datacontentencoding":  # 0.3: the value is the decoded data, as in binary HTTP
            continue
        text = attr_string(value).encode("utf-8")
        headers.append(("content-type" if name == "datacontenttype" else "ce_" + name, text))
    key = event.attributes.get("partitionkey")
    return (None if key is None else attr_string(key).encode("utf-8")), headers, event.data


def from_kafka(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> CloudEvent:
    """Read a Kafka record in binary or structured mode."""
    ce: dict[str, bytes] = {}
    ctype: bytes | None = None
    for key, raw in headers or ():
        lkey = key.lower()
        # confluent-kafka gives None for a header without a value; Kafka keys may repeat and
        # the last one wins.
        if lkey.startswith("ce_"):
            ce[lkey[3:]] = raw or b""
        elif lkey == "content-type":
            ctype = raw or b""
    if ctype is not None and ctype.lstrip()[:23].lower() == _CE_PREFIX:
        media = _jsonformat.media_type(ctype.decode("latin-1"))
        if media != _STRUCTURED:
            raise UnsupportedMediaType(f"unsupported CloudEvents format {media!r}")
        return _kafka_structured(value)
    # Structured mode sets content-type only "if present": a record with neither content-type nor
    # ce_ headers whose value looks like a JSON object is read as structured.
    if ctype is None and not ce and value is not None and value.lstrip()[:1] == b"{":
        return _kafka_structured(value)
    attrs: dict[str, AttrValue] = {}
    try:
        for name, raw in ce.items():
            attrs[_extension_name(name, "ce_")] = raw.decode("utf-8")
        if ctype is not None:
            attrs["datacontenttype"] = ctype.decode("utf-8")
        _validate.check(attrs)
    except UnicodeDecodeError:
        raise EventError("header value is not valid UTF-8") from None
    except ValueError as e:
        raise EventError(str(e)) from None
    return CloudEvent(attrs, value)


def _kafka_structured(value: bytes | None) -> CloudEvent:
    if value is None:
        raise EventError("a structured record must have a value")
    return from_json(_loads(value), _KAFKA_LIMITS)


# --- NATS ------------------------------------------------------------------------------------
def to_nats(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """NATS binary binding: every attribute, `datacontenttype` included, as a percent-encoded
    `ce-<name>` header; the payload is the data. No Content-Type header: in NATS it only flags
    structured mode."""
    headers: dict[str, str] = {}
    for name, value in event.attributes.items():
        if name != "datacontentencoding":  # the payload is the decoded data
            headers["ce-" + name] = _percent.encode(attr_string(value))
    return headers, event.data or b""


def from_nats(headers: dict[str, str] | None, payload: bytes) -> CloudEvent:
    """Read a NATS message in either mode: structured when Content-Type starts with
    `application/cloudevents`, or when there is no `ce-` header and the payload is a JSON object
    (a pre-2.2 server has no headers, and eventing-natss writes structured events without any);
    binary otherwise. Header names are case-insensitive, values percent-decoded (leniently)."""
    ce: list[tuple[str, bytes]] = []
    ctype: str | None = None
    for key, text in (headers or {}).items():
        lkey = key.lower()
        if lkey.startswith("ce-"):
            ce.append((lkey[3:], text.encode("utf-8")))
        elif lkey == "content-type":
            ctype = text
    if ctype is not None and ctype.lstrip()[:23].lower() == _CE_PREFIX.decode():
        media = _jsonformat.media_type(ctype)
        if media != _STRUCTURED:
            raise UnsupportedMediaType(f"unsupported CloudEvents format {media!r}")
        return from_json(_loads(payload), _KAFKA_LIMITS)
    if not ce and payload.lstrip()[:1] == b"{":
        return from_json(_loads(payload), _KAFKA_LIMITS)
    attrs: dict[str, AttrValue] = {}
    try:
        for name, raw in ce:
            if not _validate.valid_name(name):
                raise ValueError(f"invalid attribute name {name!r}")
            if name in attrs:
                raise ValueError(f"header ce-{name} repeated")
            attrs[name] = _percent.decode(raw, True)
        _validate.check(attrs)
    except UnicodeDecodeError:
        raise EventError("header value is not valid UTF-8") from None
    except ValueError as e:
        raise EventError(str(e)) from None
    return CloudEvent(attrs, payload or None)
