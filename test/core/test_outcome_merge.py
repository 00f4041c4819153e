"""Records from several filter processes merge into one, and survive their JSON form."""

from __future__ import annotations

import orjson
from kbroker.core.outcome_merge import merge, merge_all, records_doc, records_of, summary_doc
from kbroker.core.outcome_ring import OutcomeRing
from kbroker.core.outcomes import Attempt, Outcome, Verdict


def filled(clock_at: float, ids: list[tuple[str, float]], verdict: Verdict) -> OutcomeRing:
    ring = OutcomeRing("ns", "t", size=3, clock=lambda: clock_at)
    for event_id, at in ids:
        ring.matched()
        ring.record(
            Outcome(
                "ns", "t", event_id, "ty", "src", verdict, at, (Attempt(at, 500, 0.1),), False, 0.2
            )
        )
    return ring


def test_counts_add_and_recent_interleave_by_time() -> None:
    now = 1_000_000.0
    a = filled(now, [("a1", now - 5), ("a2", now - 3)], Verdict.DELIVERED).snapshot()
    b = filled(now, [("b1", now - 4), ("b2", now - 2), ("b3", now - 1)], Verdict.DROPPED)
    b.waiting(1, now + 9)
    merged = merge([a, b.snapshot()], size=4)
    assert merged is not None
    assert [o.event_id for o in merged.recent] == ["b1", "a2", "b2", "b3"]
    w = merged.windows["1m"]
    assert (w.matched, w.delivered, w.dropped) == (5, 2, 3)
    assert w.responses == {"5xx": 5}
    assert w.p50 is not None and abs(w.p50 - 0.2) / 0.2 < 0.1  # from the merged histograms
    assert merged.last_failure is not None and merged.last_failure.event_id == "b3"
    assert (merged.in_retry, merged.next_retry) == (1, now + 9)
    assert merge([]) is None


def test_merge_all_groups_by_trigger() -> None:
    now = 1_000_000.0
    one = filled(now, [("x", now)], Verdict.DELIVERED).snapshot()
    got = merge_all([{("ns", "t"): one}, {("ns", "t"): one}, {("ns", "u"): one}])
    assert got[("ns", "t")].windows["1h"].delivered == 2
    assert got[("ns", "u")].windows["1h"].delivered == 1


def test_json_round_trip_and_summary() -> None:
    now = 1_000_000.0
    snap = filled(now, [("a", now - 1)], Verdict.DEAD_LETTERED).snapshot()
    doc = orjson.loads(orjson.dumps(records_doc(snap)))
    assert records_of(doc) == snap
    summary = summary_doc(snap)
    assert summary["windows"]["1m"]["deadLettered"] == 1
    assert summary["lastFailure"] == {
        "id": "a",
        "verdict": "dead-lettered",
        "finished": now - 1,
        "attempts": 1,
        "status": 500,
        "error": "",
    }
