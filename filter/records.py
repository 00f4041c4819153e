"""The dispatcher's delivery records: one `OutcomeRing` per Trigger, by namespace and name.

Why it exists: the dispatcher and its workers write here on the hot path (a matched event, a
finished event, a retry scheduled), and the console, `/status` and the filter deployable's
`GET /records` read from here. Keyed by namespace/name rather than the Trigger object, so an
edited Trigger keeps its history, as a user expects of "this Trigger".

Bounded: rings of Triggers no longer in the contract are dropped by `retain`, which readers call
with the live Triggers (a read is rare; the hot path never scans).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from kbroker.core import contract, delivery
from kbroker.core.events import CloudEvent
from kbroker.core.outcome_ring import RECENT, OutcomeRing, RawAttempt
from kbroker.core.outcomes import TriggerRecords, Verdict

TRAIL_MAX = 64  # attempts kept per outcome (a dead-letter sink may fail for a long time)


def _verdict(outcome: delivery.Outcome) -> Verdict:
    # Identity tests: a dict keyed by the enum would hash it with a Python-level call.
    if outcome is delivery.Outcome.DELIVERED:
        return Verdict.DELIVERED
    if outcome is delivery.Outcome.DEAD_LETTERED:
        return Verdict.DEAD_LETTERED
    return Verdict.DROPPED


def note(
    trail: list[RawAttempt],
    at: float,
    status: int | None,
    latency: float,
    error: str = "",
    target: str = "subscriber",
) -> None:
    """One attempt of an event in flight (kept up to TRAIL_MAX)."""
    if len(trail) < TRAIL_MAX:
        trail.append((at, status, latency, error, target))


def _replied(trail: list[RawAttempt]) -> bool:
    """A stored reply is the last step of a delivered event's trail."""
    if not trail:
        return False
    last = trail[-1]
    return last[4] == "reply" and last[1] is not None and 200 <= last[1] < 300


def finish(
    ring: OutcomeRing,
    event: CloudEvent,
    result: delivery.Result,
    trail: list[RawAttempt],
    now: float,
    arrival: float,
) -> None:
    """Records the event's final outcome in its Trigger's ring."""
    attrs = event.attributes
    ring.record_raw(
        (
            attrs.get("id", ""),  # type: ignore[arg-type]  # strings by the spec; str()ed on read
            attrs.get("type", ""),
            attrs.get("source", ""),
            _verdict(result.outcome),
            now,
            tuple(trail),
            _replied(trail),
            now - arrival if arrival > 0 else 0.0,
        )
    )


class Recorder:
    def __init__(self, size: int = RECENT, clock: Callable[[], float] = time.time) -> None:
        self.size = size
        self.clock = clock
        self._rings: dict[tuple[str, str], OutcomeRing] = {}

    def ring(self, trigger: contract.Trigger) -> OutcomeRing:
        """The Trigger's ring, created on first use."""
        key = (trigger.namespace, trigger.name)
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = OutcomeRing(key[0], key[1], self.size, self.clock)
        return ring

    def get(self, namespace: str, name: str) -> OutcomeRing | None:
        return self._rings.get((namespace, name))

    def retain(self, live: Collection[tuple[str, str]]) -> None:
        """Forget the records of Triggers not in `live` (namespace, name)."""
        for key in [k for k in self._rings if k not in live]:
            del self._rings[key]

    def snapshot(self, namespace: str, name: str) -> TriggerRecords | None:
        ring = self._rings.get((namespace, name))
        return None if ring is None else ring.snapshot()

    def snapshot_all(self) -> dict[tuple[str, str], TriggerRecords]:
        now = self.clock()
        return {key: ring.snapshot(now) for key, ring in self._rings.items()}
