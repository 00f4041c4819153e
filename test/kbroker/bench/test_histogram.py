"""The histogram's buckets, percentiles and round trips, checked against exact answers."""

from __future__ import annotations

import random

import pytest

from kbroker.bench.histogram import MAX_VALUE, Histogram, bucket_bounds, bucket_index


def test_buckets_are_contiguous_and_within_one_percent() -> None:
    prev_hi = -1
    for index in range(bucket_index(MAX_VALUE) + 1):
        lo, hi = bucket_bounds(index)
        assert lo == prev_hi + 1, f"gap before bucket {index}"
        assert hi >= lo
        assert (hi - lo) / max(lo, 1) < 1 / 127
        prev_hi = hi


@pytest.mark.parametrize("value", [0, 1, 255, 256, 257, 1000, 65_535, 10**6, MAX_VALUE])
def test_value_lands_in_its_bucket(value: int) -> None:
    lo, hi = bucket_bounds(bucket_index(value))
    assert lo <= value <= hi


@pytest.mark.parametrize(
    ("q", "exact"),
    [(50, 5000), (90, 9000), (99, 9900), (99.9, 9990), (100, 10_000), (0, 1)],
    ids=["p50", "p90", "p99", "p99.9", "max", "min"],
)
def test_percentiles_of_uniform_values(q: float, exact: int) -> None:
    hist = Histogram()
    values = list(range(1, 10_001))
    random.Random(7).shuffle(values)
    hist.record_many(values)
    got = hist.percentile(q)
    assert exact <= got <= exact * (1 + 1 / 128), (q, got)


def test_small_values_are_exact() -> None:
    hist = Histogram()
    hist.record_many([3, 3, 3, 7])
    assert hist.percentile(50) == 3
    assert hist.percentile(75) == 3
    assert hist.percentile(76) == 7
    assert hist.mean == 4.0


def test_percentile_never_above_the_largest_sample() -> None:
    hist = Histogram()
    hist.record(1_000_001)
    assert hist.percentile(99.9) == 1_000_001


def test_empty_and_clamped() -> None:
    hist = Histogram()
    assert hist.percentile(99) == 0
    assert hist.summary_ms()["count"] == 0
    hist.record(-5)
    hist.record(MAX_VALUE * 2)
    assert hist.min == 0
    assert hist.max == MAX_VALUE
    with pytest.raises(ValueError, match="percentile"):
        hist.percentile(101)


def test_merge_and_dict_round_trip_equal_one_histogram() -> None:
    rng = random.Random(1)
    values = [int(rng.expovariate(1 / 2000)) for _ in range(5000)]
    whole, a, b = Histogram(), Histogram(), Histogram()
    whole.record_many(values)
    a.record_many(values[:1234])
    b.record_many(values[1234:])
    merged = Histogram.from_dict(a.to_dict())
    merged.merge(Histogram.from_dict(b.to_dict()))
    assert merged.summary_ms() == whole.summary_ms()
    assert merged.counts == whole.counts
