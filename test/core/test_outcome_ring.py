"""The per-Trigger outcome ring: bounds, window expiry on an injected clock, percentiles."""

from __future__ import annotations

import pytest
from kbroker.core import outcome_ring
from kbroker.core.outcome_ring import OutcomeRing, latency_bin, percentile
from kbroker.core.outcomes import Attempt, Outcome, Verdict


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def outcome(
    at: float,
    verdict: Verdict = Verdict.DELIVERED,
    statuses: tuple[int | None, ...] = (200,),
    latency: float = 0.01,
    n: int = 0,
    replied: bool = False,
) -> Outcome:
    attempts = tuple(
        Attempt(at, s, 0.001, "" if s is not None else "TimeoutError: timed out") for s in statuses
    )
    return Outcome("ns", "t", f"e{n}", "type", "src", verdict, at, attempts, replied, latency)


def test_ring_keeps_only_the_newest() -> None:
    clock = Clock()
    ring = OutcomeRing("ns", "t", size=5, clock=clock)
    for n in range(12):
        ring.record(outcome(clock.now, n=n))
    snap = ring.snapshot()
    assert [o.event_id for o in snap.recent] == ["e7", "e8", "e9", "e10", "e11"]
    assert snap.windows["1m"].delivered == 12  # counters count everything, the ring keeps 5


def test_counts_by_verdict_retries_replies_and_response_classes() -> None:
    clock = Clock()
    ring = OutcomeRing("ns", "t", clock=clock)
    for _ in range(3):
        ring.matched()
    ring.record(outcome(clock.now, statuses=(503, None, 200), replied=True))
    ring.record(outcome(clock.now, Verdict.DEAD_LETTERED, statuses=(422,)))
    ring.record(outcome(clock.now, Verdict.DROPPED, statuses=(500, 500)))
    ring.dls_failed()
    c = ring.snapshot().windows["1m"]
    assert (c.matched, c.delivered, c.dead_lettered, c.dropped, c.dls_failed) == (3, 1, 1, 1, 1)
    assert c.retries == 3  # 2 beyond the first for the first event, 1 for the dropped one
    assert c.replies == 1
    assert c.responses == {"2xx": 1, "4xx": 1, "5xx": 3, "timeout": 1}
    assert ring.snapshot().last_failure is not None
    assert ring.snapshot().last_failure.verdict is Verdict.DROPPED  # type: ignore[union-attr]


def test_windows_expire_with_time() -> None:
    clock = Clock(1_000_020.0)  # a bucket boundary is not special: start mid-bucket
    ring = OutcomeRing("ns", "t", clock=clock)
    ring.record(outcome(clock.now))
    clock.now += 90  # past the 1-minute window, inside 15 minutes and the hour
    ring.record(outcome(clock.now))
    snap = ring.snapshot()
    assert snap.windows["1m"].delivered == 1
    assert snap.windows["15m"].delivered == 2
    clock.now += 16 * 60
    snap = ring.snapshot()
    assert (snap.windows["1m"].delivered, snap.windows["15m"].delivered) == (0, 0)
    assert snap.windows["1h"].delivered == 2
    clock.now += 3600
    assert ring.snapshot().windows["1h"].delivered == 0
    assert len(ring.snapshot().recent) == 2  # the ring is bounded by count, not time


def test_a_reused_bucket_starts_from_zero() -> None:
    clock = Clock()
    ring = OutcomeRing("ns", "t", clock=clock)
    ring.record(outcome(clock.now))
    clock.now += 3600  # the same slot of the hour ring, an hour later
    ring.record(outcome(clock.now))
    assert ring.snapshot().windows["1h"].delivered == 1


@pytest.mark.parametrize("seconds", [0.0002, 0.003, 0.05, 0.8, 12.0])
def test_percentile_is_within_a_bin(seconds: float) -> None:
    bins = {latency_bin(seconds): 10}
    got = percentile(bins, 0.5)
    assert got is not None
    assert got == pytest.approx(seconds, rel=0.2)


def test_p50_and_p95_of_a_spread() -> None:
    clock = Clock()
    ring = OutcomeRing("ns", "t", clock=clock)
    for i in range(1, 101):  # 10 ms .. 1 s
        ring.record(outcome(clock.now, latency=i / 100))
    c = ring.snapshot().windows["1m"]
    assert c.p50 == pytest.approx(0.50, rel=0.1)
    assert c.p95 == pytest.approx(0.95, rel=0.1)
    assert percentile({}, 0.5) is None


def test_only_delivered_events_count_towards_latency() -> None:
    clock = Clock()
    ring = OutcomeRing("ns", "t", clock=clock)
    ring.record(outcome(clock.now, Verdict.DEAD_LETTERED, statuses=(500,), latency=30.0))
    assert ring.snapshot().windows["1m"].p50 is None


def test_waiting_retries_and_the_soonest() -> None:
    clock = Clock()
    ring = OutcomeRing("ns", "t", clock=clock)
    ring.waiting(1, clock.now + 5)
    ring.waiting(2, clock.now + 2)
    snap = ring.snapshot()
    assert (snap.in_retry, snap.next_retry) == (2, clock.now + 2)
    ring.resumed(2)
    ring.resumed(1)
    assert (ring.snapshot().in_retry, ring.snapshot().next_retry) == (0, None)


def test_latency_bins_are_bounded() -> None:
    assert latency_bin(0) == 0
    assert latency_bin(10**9) == outcome_ring.BINS - 1
