"""What ingress and the dispatcher report as they work: one interface per side, and a silent one.

Why it exists: ingress and the dispatcher report what happened (accepted, rejected, an attempt, a
retry, a finished delivery) without knowing who listens; `core.metrics.Metrics` listens to both.
The interfaces live in core, beside the `Outcome` they carry, so that the metrics (in core, which
may not import ingress or filter) are checked against them, and neither side defines its own.

What it refuses to do: carry spans (tracing is `core.telemetry`'s), or let a reporter change the
flow: every method returns None and is called on the event loop's thread, on the hot path.
"""

from __future__ import annotations

from typing import Protocol

from kbroker.core import contract, events
from kbroker.core.delivery import Result

# Why ingress refused a request or closed a connection for a resource limit: the whole label set.
REFUSAL_REASONS = (
    "header_size",  # 431: request line + headers over max_header_bytes
    "header_count",  # 431: more than max_header_count headers
    "header_timeout",  # 408: headers not complete within header_timeout
    "body_timeout",  # 408: body slower than min_body_rate after body_grace
    "idle_timeout",  # keep-alive connection closed after idle_timeout without a request
    "connections",  # 503: over max_connections, the new connection closed
    "body_size",  # 413: body over max_body_bytes
    "body_budget",  # 503: bodies being read already hold max_buffered_body_bytes
)


class IngressReporter(Protocol):
    """What ingress reports per request."""

    def accepted(
        self,
        broker: contract.Broker,
        evs: list[events.CloudEvent],
        nbytes: int,
        seconds: float,
        append_seconds: float,
    ) -> None: ...

    def rejected(self, broker_key: str, status: int, seconds: float) -> None: ...

    def denied(self, broker_key: str, status: int, reason: str) -> None:
        """A request refused by sender authentication (401) or authorization (403); `reason`
        is a short fixed label. Reported in addition to `rejected`."""

    def refused(self, reason: str) -> None:
        """A request or connection refused by a resource limit (`REFUSAL_REASONS`)."""
        ...


class DispatchReporter(Protocol):
    """What the dispatcher reports per delivery attempt and per finished event."""

    def attempt(self, trigger: contract.Trigger, status: int | None, seconds: float) -> None: ...

    def retry(self, trigger: contract.Trigger) -> None: ...

    def finished(
        self, trigger: contract.Trigger, result: Result, envelope_arrival: float
    ) -> None: ...


class Silent:
    """Reports to nobody: the default of both sides when no metrics are wanted."""

    def accepted(
        self,
        broker: contract.Broker,
        evs: list[events.CloudEvent],
        nbytes: int,
        seconds: float,
        append_seconds: float,
    ) -> None:
        pass

    def rejected(self, broker_key: str, status: int, seconds: float) -> None:
        pass

    def denied(self, broker_key: str, status: int, reason: str) -> None:
        pass

    def refused(self, reason: str) -> None:
        pass

    def attempt(self, trigger: contract.Trigger, status: int | None, seconds: float) -> None:
        pass

    def retry(self, trigger: contract.Trigger) -> None:
        pass

    def finished(self, trigger: contract.Trigger, result: Result, envelope_arrival: float) -> None:
        pass
