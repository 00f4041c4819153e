"""What became of each event at each Trigger: the dispatcher's own records, for people.

The dispatcher appends one `Outcome` per event it finishes with a Trigger (delivered, replied,
dead-lettered, dropped) into a bounded per-Trigger ring and windowed counters; the console, the
`/status` document and `kbroker trigger`/`deadletters` commands read them. These are the records
that answer "why was my event not delivered?" from what actually happened, never from logs.

The types live in core so every layer (filter writes, ui reads) shares them without importing
each other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    """The final state of one event at one Trigger."""

    DELIVERED = "delivered"  # the subscriber answered 2xx
    DEAD_LETTERED = "dead-lettered"  # retries exhausted (or not retryable); the DLS took it
    DLS_FAILED = "dls-failed"  # retries exhausted and the dead-letter sink refused it too
    DROPPED = (
        "dropped"  # retries exhausted, no dead-letter sink: the event is gone for this Trigger
    )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP delivery attempt to a subscriber or dead-letter sink."""

    at: float  # epoch seconds when the request was sent
    status: int | None  # HTTP status; None when no response came (timeout, refused)
    latency: float  # seconds
    error: str = ""  # short error class/message when status is None or not 2xx
    target: str = "subscriber"  # "subscriber" | "dead-letter" | "reply"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One event's final outcome at one Trigger."""

    namespace: str
    trigger: str
    event_id: str
    event_type: str
    event_source: str
    verdict: Verdict
    finished: float  # epoch seconds
    attempts: tuple[Attempt, ...] = ()
    replied: bool = False  # the subscriber answered with an event that went back to the broker
    latency: float = 0.0  # seconds from ingress acceptance to the final outcome


@dataclass(frozen=True, slots=True)
class Counters:
    """Totals for one Trigger over one window."""

    matched: int = 0
    delivered: int = 0
    retries: int = 0  # attempts beyond the first
    dead_lettered: int = 0
    dls_failed: int = 0
    dropped: int = 0
    replies: int = 0
    p50: float | None = None  # seconds, end-to-end, of delivered events
    p95: float | None = None
    responses: dict[str, int] = field(default_factory=dict)  # "2xx"/"4xx"/"5xx"/"timeout"/...
    # Delivered events' end-to-end latency as a log-scale histogram (core.outcome_ring's bins):
    # what lets windows from several filter processes merge into exact-to-the-bin percentiles.
    latency_bins: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TriggerRecords:
    """What the dispatcher knows about one Trigger right now."""

    namespace: str
    trigger: str
    windows: dict[str, Counters]  # "1m", "15m", "1h"
    recent: tuple[Outcome, ...]  # newest last, bounded
    last_failure: Outcome | None = None
    in_retry: int = 0  # events currently waiting for a retry
    next_retry: float | None = None  # epoch seconds of the soonest scheduled retry
