"""CloudEvent value and its sans-IO codecs: HTTP (binary, structured, batch) and Kafka binary.

Why our own codec rather than the `cloudevents` SDK: the SDK invents attributes (`id`, `time`),
rewrites `time`, mis-detects the content mode and decodes percent-encoding leniently
(../shared/reference/cloudevents.md §6). A broker must forward what it received, unchanged, and
reject what is invalid with a message naming the problem. The SDK is used in tests only, as an
independent encoder/decoder to cross-check this module in both directions.

The value keeps attributes as received: strings from binary mode, and JSON booleans/integers from
structured mode. `data` is always bytes, exactly what a binary-mode body would carry.

Errors:

    EventError (ValueError)        400: not a valid CloudEvent; `index` names the batch element
     +-- UnsupportedMediaType      415: a CloudEvents format other than JSON
     +-- PayloadTooLarge           413: over the event or batch caps
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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
    max_headers: int = 100  # ce- attributes per binary-mode event
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


def decode_http(
    headers: Iterable[tuple[bytes, bytes]], body: bytes, limits: DecodeLimits = DecodeLimits()
) -> list[CloudEvent]:
    """Decode an HTTP request or response (ASGI-style raw headers) into one event or a batch."""
    raise NotImplementedError


def encode_binary(event: CloudEvent) -> tuple[list[tuple[str, str]], bytes]:
    """Binary content mode: `ce-` headers (percent-encoded) plus Content-Type, body = data."""
    raise NotImplementedError


def encode_structured(event: CloudEvent) -> tuple[list[tuple[str, str]], bytes]:
    """Structured content mode, JSON format."""
    raise NotImplementedError


def encode_batch(events: Sequence[CloudEvent]) -> bytes:
    """Batch content mode body (`application/cloudevents-batch+json`)."""
    raise NotImplementedError


def to_json(event: CloudEvent) -> dict[str, Any]:
    """The JSON-format object of one event."""
    raise NotImplementedError


def from_json(obj: Any, limits: DecodeLimits = DecodeLimits()) -> CloudEvent:
    """Parse and validate one JSON-format event object."""
    raise NotImplementedError


def to_kafka(event: CloudEvent) -> tuple[bytes | None, list[tuple[str, bytes]], bytes | None]:
    """Kafka binary binding: (key from partitionkey, `ce_` headers + content-type, value)."""
    raise NotImplementedError


def from_kafka(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> CloudEvent:
    """Read a Kafka record in binary or structured mode."""
    raise NotImplementedError
