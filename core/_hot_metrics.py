"""Counters and histograms for the event path: plain attribute adds, exposed as Prometheus metrics.

Why not prometheus-client's own Counter and Histogram here: every `inc()` and `observe()` there
takes a lock and checks observability, about 1.5 µs each; an accepted request updated six of them,
which measured 11 µs of the ingress's ~40 µs of Python per request (cProfile, 50,000 requests). The
values below are updated only from the event loop's thread (ingress and dispatcher hooks run
there), so a plain `+=` is safe; a scrape from another thread may see a histogram's sum a few
observations ahead of its buckets, never a lost increment.

They plug into prometheus-client as collectors, so the exposition (names, `_total`, `_bucket`,
`_sum`, `_count`, `le` labels) is the same text format as before and `generate_latest` renders it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

V = TypeVar("V")


class CounterValue:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramValue:
    """Per-bucket counts (not cumulative: observe touches one slot) plus the sum."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, as Prometheus buckets are `le` (inclusive).
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


class _Labeled(Generic[V]):
    """Children by label values, created on first use; subclasses say how to make one."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self._name = name
        self._doc = documentation
        self._labelnames = list(labelnames)
        self._children: dict[tuple[str, ...], V] = {}

    def _new_child(self) -> V:
        raise NotImplementedError

    def labels(self, *values: str) -> V:
        """The child for these label values (cache it: this is a dict lookup per call)."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name}: expected labels {self._labelnames}, got {values}")
            child = self._children[values] = self._new_child()
        return child


class Counter(_Labeled[CounterValue]):
    """A labelled counter; `labels(...)` returns the value to `inc()`."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        super().__init__(name, documentation, labelnames)
        registry.register(self)

    def _new_child(self) -> CounterValue:
        return CounterValue()

    def describe(self) -> list[Metric]:
        """The family without samples: lets the registry refuse a second metric of this name."""
        return [CounterMetricFamily(self._name, self._doc, labels=self._labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=self._labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        yield family


class Histogram(_Labeled[HistogramValue]):
    """A labelled histogram with fixed bucket bounds; `labels(...)` returns the value to
    `observe()`."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self._bounds = tuple(float(b) for b in buckets)
        if list(self._bounds) != sorted(set(self._bounds)):
            raise ValueError(f"{name}: bucket bounds must be increasing")
        registry.register(self)

    def _new_child(self) -> HistogramValue:
        return HistogramValue(self._bounds)

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)
        for values, child in list(self._children.items()):
            counts, total = list(child.counts), child.sum
            cumulative, buckets = 0, []
            for bound, n in zip((*self._bounds, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append((_le(bound), float(cumulative)))
            family.add_metric(list(values), buckets, total)
        yield family


def _le(bound: float) -> str:
    """The `le` label as prometheus-client writes it (`0.005`, `1.0`, `+Inf`)."""
    return "+Inf" if bound == float("inf") else repr(bound)
