"""The receiver's accounting: delivered, duplicates, missing, refused-at-ingress, retries."""

from __future__ import annotations

import pytest

from kbroker.bench.receiver import TriggerSpec, TriggerState


@pytest.mark.parametrize(
    ("spec", "lo", "hi", "want"),
    [
        (TriggerSpec("a"), 0, 10, 10),
        (TriggerSpec("a", 10, 3), 0, 100, 10),
        (TriggerSpec("a", 10, 3), 4, 13, 0),
        (TriggerSpec("a", 10, 3), 4, 14, 1),
        (TriggerSpec("a", 10, 9), 0, 9, 0),
        (TriggerSpec("a", 4, 0), 5, 5, 0),
    ],
)
def test_count_in_matches_brute_force(spec: TriggerSpec, lo: int, hi: int, want: int) -> None:
    assert spec.count_in(lo, hi) == want == sum(spec.matches(s) for s in range(lo, hi))


def test_counts_add_up() -> None:
    t = TriggerState(TriggerSpec("a"))
    t.window(0, 10)
    for seq in [0, 1, 2, 2, 3, 42]:  # a duplicate, and a stray from outside the window
        t.deliver(seq, ts_us=0, now_ns=1_000_000)
    t.dead_letter(4)
    out = t.collect(rejected=[9])  # refused at ingress: not owed
    assert out["expected"] == 9
    assert out["delivered"] == 4
    assert out["duplicates"] == 1
    assert out["unexpected"] == 1
    assert out["dead_lettered"] == 1
    assert out["missing"] == 9 - 4 - 1
    assert out["latency"]["total"] == 6


def test_failures_then_retries_measure_the_backoff_gap() -> None:
    t = TriggerState(TriggerSpec("a", fail=0.5))
    t.window(0, 10)
    answers = [t.deliver(0, 0, 1_000_000_000), t.deliver(0, 0, 1_250_000_000)]
    assert [a.split()[1] for a in answers] == [b"202", b"503"]
    assert t.deliver(0, 0, 1_400_000_000).split()[1] == b"202"
    out = t.collect([])
    assert out["failed"] == 1
    assert out["retries"] == 1
    assert out["gaps"]["max"] == 150_000  # us between the 503 and the retry
    assert out["delivered"] == 1
    assert out["duplicates"] == 1
