"""A small HDR-style latency histogram: log-bucketed, fixed relative error, mergeable.

Why our own: the benchmark needs percentiles up to p99.9 from millions of samples recorded in
three processes (generator, receiver, coordinator) and merged afterwards. A list of samples is too
big to ship between processes and too slow to sort; a fixed set of buckets is neither. Values are
integer microseconds. Below 256 us every value has its own bucket; above, each power of two is cut
into 128 sub-buckets, so any reported value is within 1/128 (< 0.8%) of the truth, which is what
HdrHistogram calls two significant digits. It refuses floats and negative values (clamped to 0: a
clock step must not crash a run) and anything above one hour (clamped to the top bucket).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SUB_BITS = 7
_SUB = 1 << SUB_BITS  # 128 sub-buckets per power of two
_LINEAR = _SUB << 1  # values below 256 are exact
MAX_VALUE = 3_600_000_000  # one hour in microseconds


def bucket_index(value: int) -> int:
    """The bucket of a non-negative integer value."""
    if value < _LINEAR:
        return value
    shift = value.bit_length() - (SUB_BITS + 1)
    return _LINEAR + (shift - 1) * _SUB + ((value >> shift) - _SUB)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The lowest and highest value that land in a bucket (both inclusive)."""
    if index < _LINEAR:
        return index, index
    shift = (index - _LINEAR) // _SUB + 1
    top = (index - _LINEAR) % _SUB + _SUB
    return top << shift, ((top + 1) << shift) - 1


_SIZE = bucket_index(MAX_VALUE) + 1


@dataclass(slots=True)
class Histogram:
    """Counts per bucket plus exact count, min, max and sum (for the mean)."""

    counts: list[int] = field(default_factory=lambda: [0] * _SIZE)
    total: int = 0
    min: int = MAX_VALUE
    max: int = 0
    sum: int = 0

    def record(self, value: int) -> None:
        if value < 0:
            value = 0
        elif value > MAX_VALUE:
            value = MAX_VALUE
        self.counts[bucket_index(value)] += 1
        self.total += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def record_many(self, values: Iterable[int]) -> None:
        for value in values:
            self.record(value)

    def merge(self, other: Histogram) -> None:
        if other.total == 0:
            return
        counts = self.counts
        for i, c in enumerate(other.counts):
            if c:
                counts[i] += c
        self.total += other.total
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> int:
        """The value at or below which q percent of the samples lie (0 when empty).

        Reports the top of the bucket (never above the largest sample), as HdrHistogram does: a
        percentile is an upper bound, so a reader never sees a latency better than measured.
        """
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be within 0..100, got {q}")
        if self.total == 0:
            return 0
        rank = max(1, math.ceil(q / 100.0 * self.total))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return max(self.min, min(bucket_bounds(i)[1], self.max))
        return self.max

    @property
    def mean(self) -> float:
        return self.sum / self.total if self.total else 0.0

    def summary_ms(self) -> dict[str, float]:
        """p50/p90/p99/p99.9/max/mean in milliseconds, the unit every report uses."""
        return {
            "p50": self.percentile(50) / 1000,
            "p90": self.percentile(90) / 1000,
            "p99": self.percentile(99) / 1000,
            "p99.9": self.percentile(99.9) / 1000,
            "max": (self.max if self.total else 0) / 1000,
            "mean": round(self.mean / 1000, 3),
            "count": self.total,
        }

    def to_dict(self) -> dict[str, Any]:
        """A sparse, JSON-friendly form for shipping between processes."""
        return {
            "buckets": {str(i): c for i, c in enumerate(self.counts) if c},
            "total": self.total,
            "min": self.min,
            "max": self.max,
            "sum": self.sum,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        hist = cls()
        for key, count in data["buckets"].items():
            hist.counts[int(key)] = int(count)
        hist.total = int(data["total"])
        hist.min = int(data["min"])
        hist.max = int(data["max"])
        hist.sum = int(data["sum"])
        return hist
