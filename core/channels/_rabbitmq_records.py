"""The RabbitMQ channel's message format: an Envelope as an AMQP 0-9-1 message, and back.

Why it exists: the message format is the channel's contract with every other AMQP client reading or
writing a broker's exchange and queues, so it is written down once, apart from the connections.

Writing, binary mode after the CloudEvents AMQP binding: `datacontenttype` is the `content-type`
property, the data is the body, every other attribute is a header `cloudEvents_<name>` (the
binding's preferred, JMS-safe separator; AMQP 0-9-1 has no application-properties section, so the
headers table stands in for it). Booleans and integers keep their AMQP types; timestamps stay the
sender's RFC 3339 text (the binding's canonical string form). The `message-id` property is the
event id. What travels beside the event rides in headers other readers ignore: `kb_arrival`,
`traceparent`, `tracestate`.

Reading is lenient, to take what other producers write: structured mode (`content-type`
application/cloudevents...), the binding's `cloudEvents_` and `cloudEvents:` prefixes, the `ce-` /
`ce_` headers of other bindings, and the bare, unprefixed headers eventing-rabbitmq writes (used
only when a message has no prefixed attribute at all; `x-` headers are never attributes).

What it refuses to do: talk to RabbitMQ (this module needs no client and is tested without one), or
guess: a message that is not a CloudEvent raises `EventError`, and the consumer decides.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kbroker.core import _validate
from kbroker.core.channel import Envelope
from kbroker.core.events import AttrValue, CloudEvent, EventError, attr_string, from_kafka

PREFIX = "cloudEvents_"
ARRIVAL_HEADER = "kb_arrival"
_READ_PREFIXES = ("cloudevents_", "cloudevents:", "ce-", "ce_")
_ENVELOPE = ("traceparent", "tracestate")
_STRUCTURED = "application/cloudevents"


@dataclass(frozen=True, slots=True)
class Message:
    """What to publish: the body and the properties that carry the event."""

    body: bytes
    headers: dict[str, Any]
    content_type: str | None
    message_id: str


def encode(env: Envelope) -> Message:
    event = env.event
    headers: dict[str, Any] = {}
    content_type: str | None = None
    for name, value in event.attributes.items():
        if name == "datacontenttype":
            content_type = attr_string(value)
        elif name != "datacontentencoding":  # 0.3: the body is already the decoded data
            headers[PREFIX + name] = value if isinstance(value, bool | int) else attr_string(value)
    headers[ARRIVAL_HEADER] = repr(env.arrival)
    if env.traceparent:
        headers["traceparent"] = env.traceparent
    if env.tracestate:
        headers["tracestate"] = env.tracestate
    return Message(event.data or b"", headers, content_type, event.id)


def decode(
    headers: Mapping[str, Any] | None,
    content_type: str | None,
    body: bytes,
    timestamp: datetime.datetime | None = None,
) -> Envelope:
    """The envelope a delivered message carries. Raises EventError if it is no event."""
    headers = headers or {}
    extra = {k: _text(v) for k, v in headers.items() if k in (ARRIVAL_HEADER, *_ENVELOPE)}
    try:
        arrival = float(extra[ARRIVAL_HEADER])
    except (KeyError, ValueError):  # written by someone else
        arrival = timestamp.timestamp() if timestamp is not None else time.time()
    if content_type and content_type.lstrip()[: len(_STRUCTURED)].lower() == _STRUCTURED:
        event = from_kafka([("content-type", content_type.encode())], body)
    else:
        event = _binary(headers, content_type, body)
    return Envelope(
        event,
        arrival=arrival,
        traceparent=extra.get("traceparent"),
        tracestate=extra.get("tracestate"),
    )


def _binary(headers: Mapping[str, Any], content_type: str | None, body: bytes) -> CloudEvent:
    prefixed: dict[str, AttrValue] = {}
    bare: dict[str, AttrValue] = {}
    for key, raw in headers.items():
        lkey = key.lower()
        for prefix in _READ_PREFIXES:
            if lkey.startswith(prefix):
                prefixed[lkey[len(prefix) :]] = _value(raw)
                break
        else:
            if lkey in _ENVELOPE or lkey.startswith(("x-", "kb_")):
                continue
            if _validate.valid_name(lkey):
                bare[lkey] = _value(raw)
    attrs = prefixed or bare
    if content_type:
        attrs["datacontenttype"] = content_type
    try:
        _validate.check(attrs)
    except ValueError as e:
        raise EventError(str(e)) from None
    return CloudEvent(attrs, body or None)


def _value(raw: Any) -> AttrValue:
    if isinstance(raw, bool | int):
        return raw
    if isinstance(raw, datetime.datetime):  # an AMQP timestamp: RFC 3339, UTC
        aware = raw if raw.tzinfo else raw.replace(tzinfo=datetime.UTC)
        return aware.isoformat().replace("+00:00", "Z")
    return _text(raw)


def _text(raw: Any) -> str:
    if isinstance(raw, bytes | bytearray):
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise EventError("header value is not valid UTF-8") from None
    return str(raw)
