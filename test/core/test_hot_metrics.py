"""core/_hot_metrics renders exactly what prometheus-client's own Counter/Histogram would."""

from __future__ import annotations

import pytest
from kbroker.core import _hot_metrics as hot
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram
from prometheus_client.parser import text_string_to_metric_families

BOUNDS = (0.001, 0.01, 0.1, 1.0)
VALUES = [0.0, 0.0005, 0.001, 0.001000001, 0.01, 0.05, 0.1, 0.7, 1.0, 3.0, 1e9]


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if not s.name.endswith("_created"):  # prometheus-client's extra series; ours has none
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_histogram_matches_prometheus_client_bucket_for_bucket() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    h = hot.Histogram("lat_seconds", "doc", ("b",), ours, buckets=BOUNDS)
    p = PromHistogram("lat_seconds", "doc", ("b",), registry=theirs, buckets=BOUNDS)
    for i, v in enumerate(VALUES):
        h.labels(str(i % 2)).observe(v)
        p.labels(str(i % 2)).observe(v)
    assert samples(ours) == samples(theirs)
    # Boundaries are inclusive (`le`): 0.001 lands in the 0.001 bucket (with 0.0), and
    # 0.001000001 (label "1") does not (only 0.0005 does).
    assert samples(ours)[("lat_seconds_bucket", frozenset({("b", "0"), ("le", "0.001")}))] == 2
    assert samples(ours)[("lat_seconds_bucket", frozenset({("b", "1"), ("le", "0.001")}))] == 1


def test_counter_matches_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    c = hot.Counter("events", "doc", ("a", "b"), ours)
    p = PromCounter("events", "doc", ("a", "b"), registry=theirs)
    for a, b, n in [("x", "1", 1), ("x", "1", 2.5), ("y", "2", 4)]:
        c.labels(a, b).inc(n)
        p.labels(a, b).inc(n)
    assert samples(ours) == samples(theirs)
    assert samples(ours)[("events_total", frozenset({("a", "x"), ("b", "1")}))] == 3.5


def test_labels_are_checked_and_children_cached() -> None:
    c = hot.Counter("c", "doc", ("a",), CollectorRegistry())
    assert c.labels("x") is c.labels("x")
    with pytest.raises(ValueError, match="expected labels"):
        c.labels("x", "y")


def test_a_second_metric_of_the_same_name_is_refused() -> None:
    registry = CollectorRegistry()
    hot.Counter("dup", "doc", (), registry)
    with pytest.raises(ValueError, match="Duplicated"):
        hot.Histogram("dup", "doc", (), registry, buckets=BOUNDS)


def test_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        hot.Histogram("h", "doc", (), CollectorRegistry(), buckets=(1.0, 0.5))
