"""What the console needs from the running broker, as small Protocols.

`kbroker run` implements them in-process; `kbroker ui` (cluster mode) over HTTP to the ingress and
filter deployables and through the API server. Keeping the console behind these means it imports
only `kbroker.core` and is tested with fakes as well as against a real broker.

Objects are plain Knative-shaped dicts (apiVersion, kind, metadata, spec, status), exactly what
`GET /status` and `kubectl get -o json` show, so standalone and cluster mode look the same.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from kbroker.core.channel import Envelope
from kbroker.core.contract import Contract, Durability
from kbroker.core.events import CloudEvent
from kbroker.core.outcomes import Outcome, TriggerRecords

KObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an object came from, which decides whether the console may edit it."""

    editable: bool  # UI-owned file (standalone) or an API-server object the console may write
    path: str = ""  # the file holding it (standalone), for the read-only notice
    reason: str = ""  # why it is read-only, shown to the user


class Objects(Protocol):
    """The control plane: objects as written plus status, validation, writes."""

    def contract(self) -> Contract:
        """The contract the data plane runs now (effective filters, resolved URIs)."""
        ...

    async def list(self, kind: str, namespace: str | None = None) -> list[KObject]:
        """Objects of `kind` ("Broker", "Trigger", ...), with status."""
        ...

    async def get(self, kind: str, namespace: str, name: str) -> KObject | None: ...

    def origin(self, obj: KObject) -> Origin: ...

    def validate(self, obj: KObject) -> builtins.list[str]:
        """The controller's own validation: field errors as 'spec.filter: message', [] if valid."""
        ...

    async def apply(self, obj: KObject) -> KObject:
        """Create or replace a console-owned object (atomic file write / API server)."""
        ...

    async def delete(self, kind: str, namespace: str, name: str) -> None: ...


class Events(Protocol):
    """A broker's events, read from its channel without being a Trigger."""

    async def recent(self, namespace: str, broker: str, limit: int) -> list[Envelope] | None:
        """The last `limit` events stored for the broker, oldest first; None when the backend
        cannot read history (RabbitMQ keeps no log)."""
        ...

    def tail(self, namespace: str, broker: str) -> AsyncIterator[Envelope]:
        """Events appended from now on, from an ephemeral reader that commits nothing."""
        ...

    async def publish(
        self, namespace: str, broker: str, event: CloudEvent, durability: Durability
    ) -> None:
        """Append as the ingress would (republish, "send an event")."""
        ...


class Deliveries(Protocol):
    """The dispatcher's records, and a way to deliver one event to one Trigger again."""

    def records(self, namespace: str, trigger: str) -> TriggerRecords | None: ...

    def all_records(self) -> Mapping[tuple[str, str], TriggerRecords]: ...

    async def redrive(
        self, namespace: str, trigger: str, events: Sequence[CloudEvent]
    ) -> list[Outcome]:
        """Deliver `events` to the Trigger's subscriber only (ids kept), with its delivery spec;
        each outcome is recorded like any other."""
        ...


@runtime_checkable
class OpenableTail(Protocol):
    """Optional for what `Events.tail` returns: `opened()` returns once the reader is positioned
    at the log's end, so a viewer told "tailing" misses nothing appended after that. A plain
    async iterator positions itself at its first step instead."""

    async def opened(self) -> None: ...
