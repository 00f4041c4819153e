"""kbroker.bench_cesql: every case runs, every contender matches the event, figures are sane."""

from __future__ import annotations

from kbroker import bench_cesql


def test_measure_reports_every_case() -> None:
    rows = bench_cesql.measure(seconds_per_case=0.05)
    assert [r["case"] for r in rows] == ["single equality", "AND of =, LIKE, IN", "functions"]
    for row in rows:
        for key in ("cesql_per_s", "dialect_closures_per_s", "fused_python_per_s"):
            value = row[key]
            assert isinstance(value, int) and value > 1000, (row["case"], key)
        assert isinstance(row["cesql_slowdown"], float)
    assert "core_filters_per_s" in rows[0]


def test_hand_written_filters_agree_with_cesql_on_other_events() -> None:
    """The contenders are equivalent filters, not just fast ones: same answer off the happy path."""
    from kbroker.core import cesql

    variants = [
        {**bench_cesql.EVENT, "type": "com.example.b"},
        {**bench_cesql.EVENT, "source": "http://example.com"},
        {**bench_cesql.EVENT, "subject": "order-44"},
        {k: v for k, v in bench_cesql.EVENT.items() if k != "subject"},
    ]
    for case in bench_cesql.cases():
        compiled = cesql.compile_filter(case.expression)
        for event in variants:
            want = compiled(event)
            assert case.by_hand(event) is want, (case.name, event)
            assert case.fused(event) is want, (case.name, event)
