"""The Channel Protocol: where a broker's events wait, durably, between ingress and dispatch.

One Protocol, several backends (`core/channels/<name>.py`), chosen per Broker by its class, so
several backends run side by side in one process. A backend must:

- `append` a batch for a broker at a `Durability` and return only once the batch is safe at that
  level (group commit / producer batching: never a synchronous flush per event);
- give each trigger a `Subscription` that reads from the trigger's own committed position onward,
  starting at the log's end or beginning for a trigger it has never seen;
- `commit` a trigger's progress per partition, only ever forward;
- create and delete a broker's storage, and report lag.

Errors (the only exceptions a backend may let out; foreign ones are translated at the adapter):

    ChannelError
     +-- ChannelUnavailable   the backend cannot take the event now (down, locked, timeout): 503
     +-- ChannelFull          out of space for this broker: 507
     +-- EventTooLarge        larger than the backend can store: 413
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kbroker.core import contract
from kbroker.core.events import CloudEvent


class ChannelError(Exception):
    """Base of every error a channel backend raises."""


class ChannelUnavailable(ChannelError):
    """The backend cannot take or serve events right now; retrying later may work."""


class ChannelFull(ChannelError):
    """The backend has no room for this broker's events (disk full, retention quota)."""


class EventTooLarge(ChannelError):
    """The event is larger than the backend accepts."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """An event plus what travels beside it through the channel (not part of the event)."""

    event: CloudEvent
    arrival: float  # wall-clock time ingress accepted it (epoch seconds), for end-to-end latency
    traceparent: str | None = None  # W3C trace context of the ingress span
    tracestate: str | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One stored event as a subscription reads it."""

    partition: int
    offset: int  # strictly increasing within a partition; not necessarily contiguous
    key: str | None  # the partitionkey extension, if any
    envelope: Envelope


class Subscription(Protocol):
    """A trigger's reading position in one broker's log."""

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        """Next records after what this subscription already returned; [] after `timeout` s."""
        ...

    async def commit(self, partition: int, offset: int) -> None:
        """Everything in `partition` up to and including `offset` has a final outcome."""
        ...

    async def lag(self) -> int:
        """Events stored after the committed position (0 when caught up)."""
        ...

    async def close(self) -> None: ...


class Channel(Protocol):
    """A messaging backend holding any number of brokers' logs."""

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_broker(self, broker: contract.Broker) -> None:
        """Create the broker's storage if it does not exist yet (idempotent)."""
        ...

    async def delete_broker(self, broker: contract.Broker) -> None:
        """Remove the broker's storage and every position in it (not for external topics)."""
        ...

    async def append(
        self,
        broker: contract.Broker,
        envelopes: Sequence[Envelope],
        durability: contract.Durability,
    ) -> None:
        """Store the envelopes in order; return once safe at `durability`."""
        ...

    def subscribe(self, broker: contract.Broker, trigger: contract.Trigger) -> Subscription:
        """A reader for `trigger`, resuming from its committed position."""
        ...

    async def delete_subscription(self, broker: contract.Broker, trigger: contract.Trigger) -> None:
        """Forget a removed trigger's position (its consumer group), so a new one starts afresh."""
        ...

    async def healthy(self) -> bool:
        """Whether the backend can currently take events (used by /readyz)."""
        ...


@runtime_checkable
class ProblemReporter(Protocol):
    """A channel that can tell, at any time, why one broker's storage cannot serve.

    Separate from `Channel` so backends without such problems (Kafka: its errors surface per
    call) need nothing: `broker_problem` answers None for them."""

    def problem(self, broker: contract.Broker) -> str | None:
        """Why the broker's storage cannot take or serve events (e.g. a damaged log), else None.
        Cheap and non-blocking: read on every /status request."""
        ...


def broker_problem(channel: Channel, broker: contract.Broker) -> str | None:
    """The channel's standing problem with `broker`; None also for channels reporting none."""
    return channel.problem(broker) if isinstance(channel, ProblemReporter) else None


class Tail(Protocol):
    """An ephemeral reader from the log's end at the time it was opened: it commits nothing and
    leaves no position, consumer group or queue behind once closed."""

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        """Records appended after the previous fetch (or the opening); [] after `timeout` s."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Inspector(Protocol):
    """A channel that lets people look at a broker's events without being a Trigger (the
    console's filter tester and live tail). Optional: a channel without it has no history and no
    tail to show."""

    async def recent(self, broker: contract.Broker, limit: int) -> list[Record] | None:
        """The last `limit` stored events, oldest first; None when the backend keeps no history
        it can read back."""
        ...

    async def tail(self, broker: contract.Broker) -> Tail:
        """A reader positioned at the log's end now: only events appended later are returned."""
        ...
