"""The NATS channel's message format: an Envelope as (headers, payload), and back.

Why it exists: the message format is the channel's contract with every other NATS client reading or
writing a broker's subject, so it is written down once, apart from the code that moves messages.

Events travel in the CloudEvents NATS binding, **binary mode** (`core.events.to_nats/from_nats`):
every attribute is a percent-encoded `ce-<name>` header and the payload is the data, untouched.
Binary rather than structured because the data then needs no JSON or base64 wrapping (a binary
payload stays its own size), a reader can route on `ce-type` without parsing the payload, and it is
the same choice as the Kafka channel's. Structured messages (Content-Type
`application/cloudevents+json`, or a bare JSON event as eventing-natss writes them) are read too.

What travels beside the event rides in extra headers (`kb-arrival`, `traceparent`, `tracestate`,
`kb-types`) that `from_nats` ignores, so other readers see a plain CloudEvent.

What it refuses to do: talk to NATS (this module needs no client and is tested without one), or
guess: a message that is not a CloudEvent raises `EventError`, and the subscription skips it.
"""

from __future__ import annotations

from kbroker.core.channel import Envelope
from kbroker.core.channels import _attr_types as attr_types
from kbroker.core.events import from_nats, to_nats

ARRIVAL_HEADER = "kb-arrival"
# The binary binding turns every attribute into a string; a JSON integer or boolean that arrived in
# structured mode keeps its type through this header ("count=i,flag=b"), which other readers ignore.
TYPES_HEADER = "kb-types"


def encode(env: Envelope) -> tuple[dict[str, str], bytes]:
    """The headers and payload to publish for one envelope."""
    headers, payload = to_nats(env.event)
    headers[ARRIVAL_HEADER] = repr(env.arrival)
    if env.traceparent:
        headers["traceparent"] = env.traceparent
    if env.tracestate:
        headers["tracestate"] = env.tracestate
    types = attr_types.types_of(env.event.attributes)
    if types:
        headers[TYPES_HEADER] = types
    return headers, payload


def decode(headers: dict[str, str] | None, payload: bytes, timestamp: float) -> Envelope:
    """The envelope a stored message carries; `timestamp` (the stream's own, epoch seconds) is its
    arrival when another client wrote it. Raises EventError if it is no event."""
    extra = {k.lower(): v for k, v in (headers or {}).items() if not k.lower().startswith("ce-")}
    try:
        arrival = float(extra[ARRIVAL_HEADER])
    except (KeyError, ValueError):
        arrival = timestamp
    event = from_nats(headers, payload)
    if TYPES_HEADER in extra:
        attr_types.retype(event.attributes, extra[TYPES_HEADER])
    return Envelope(
        event,
        arrival=arrival,
        traceparent=extra.get("traceparent"),
        tracestate=extra.get("tracestate"),
    )


def key_of(env: Envelope) -> str | None:
    """`Record.key`: the partitionkey extension, as text."""
    value = env.event.get("partitionkey")
    return None if value is None else str(value)
