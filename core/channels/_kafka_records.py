"""The Kafka channel's record format: an Envelope as (key, headers, value), and back.

Why it exists: the record format is the channel's contract with every other Kafka client reading or
writing a broker's topic, so it is written down once, apart from the threads that move records.
Events travel in the CloudEvents Kafka binary binding (`core.events.to_kafka/from_kafka`, key =
partitionkey); what travels beside the event rides in extra headers (`kb_arrival`, `traceparent`,
`tracestate`, `kb_types`) that `from_kafka` ignores, so other readers see a plain CloudEvent.
Structured records from other producers are read too.

What it refuses to do: talk to Kafka (a consumed message comes in as its parts, so this module needs
no client and is tested without one), or guess: a record that is not a CloudEvent raises
`EventError`, and the consumer decides to skip it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kbroker.core.channel import Envelope
from kbroker.core.channels import _attr_types as attr_types
from kbroker.core.events import from_kafka, to_kafka

ARRIVAL_HEADER = "kb_arrival"
# The binary binding turns every attribute into a string; a JSON integer or boolean that arrived in
# structured mode keeps its type through this header ("count=i,flag=b"), which other readers ignore.
TYPES_HEADER = "kb_types"
_OURS = (ARRIVAL_HEADER, TYPES_HEADER, "traceparent", "tracestate")

# What a Kafka client hands over as a record's headers: a list of pairs or (rarely) a dict, with
# str, bytes or None values.
RawHeaders = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None]
# key, headers, value; the header values typed as a Kafka client takes them
Produced = tuple[bytes | None, list[tuple[str, str | bytes | None]], bytes | None]


def encode(env: Envelope) -> Produced:
    """The record to produce for one envelope."""
    key, headers, value = to_kafka(env.event)
    extra: list[tuple[str, bytes]] = [(ARRIVAL_HEADER, repr(env.arrival).encode())]
    if env.traceparent:
        extra.append(("traceparent", env.traceparent.encode()))
    if env.tracestate:
        extra.append(("tracestate", env.tracestate.encode()))
    types = attr_types.types_of(env.event.attributes)
    if types:
        extra.append((TYPES_HEADER, types.encode()))
    out: list[tuple[str, str | bytes | None]] = [*headers, *extra]
    return key, out, value


def decode(given: RawHeaders | None, value: bytes | None, timestamp_ms: int) -> Envelope:
    """The envelope a consumed record carries; `timestamp_ms` (the record's own timestamp) is its
    arrival when the record came from another producer. Raises EventError if it is no event."""
    pairs = given.items() if isinstance(given, Mapping) else (given or [])
    headers = [
        (name, raw.encode() if isinstance(raw, str) else (raw or b"")) for name, raw in pairs
    ]
    extra: dict[str, str] = {}
    for name, raw in headers:
        if name in _OURS:
            extra[name] = raw.decode("utf-8", "replace")
    try:
        arrival = float(extra[ARRIVAL_HEADER])
    except (KeyError, ValueError):  # written by someone else: the record's own timestamp
        arrival = timestamp_ms / 1000.0
    event = from_kafka(headers, value)
    if TYPES_HEADER in extra:
        attr_types.retype(event.attributes, extra[TYPES_HEADER])
    return Envelope(
        event,
        arrival=arrival,
        traceparent=extra.get("traceparent"),
        tracestate=extra.get("tracestate"),
    )


def key_of(key: str | bytes | None) -> str | None:
    """A record's key as `Record.key` holds it (the partitionkey, as text)."""
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key
