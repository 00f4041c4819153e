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

    def attempt(self, trigger: contract.Trigger, status: int | None, seconds: float) -> None:
        pass

    def retry(self, trigger: contract.Trigger) -> None:
        pass

    def finished(self, trigger: contract.Trigger, result: Result, envelope_arrival: float) -> None:
        pass
