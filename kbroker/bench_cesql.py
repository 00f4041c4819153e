"""CESQL filter cost: compiled CESQL next to hand-written Python closures for the same filter.

Why: a Trigger filter runs once per event per trigger, so its cost multiplies with fan-out. The
claims in docs/cesql.md (>= 1M evaluations/s for one equality, >= 300k/s for three clauses,
within 2x of the exact/prefix dialects) are these numbers. The "dialect" column is the same
filter written as plain closures, composed the way exact/prefix/any/all dialect filters are
(one closure per clause, an outer closure combining them); `core.filters` is the project's real
dialect implementation, measured too when it can build the case.

    python -m kbroker.bench_cesql [seconds-per-case]

Single-threaded: one core's figure. Every evaluation uses an event that matches, so every clause
runs (a non-matching event short-circuits and is cheaper).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kbroker.core import cesql

Attributes = Mapping[str, str | int | bool]
Predicate = Callable[[Attributes], bool]

EVENT: dict[str, str | int | bool] = {
    "specversion": "1.0",
    "id": "a1b2c3",
    "source": "https://example.com/orders",
    "type": "com.example.a",
    "subject": "order-42",
    "time": "2026-11-28T01:00:00Z",
    "datacontenttype": "application/json",
}


def _exact(name: str, want: str) -> Predicate:
    def match(attrs: Attributes) -> bool:
        return attrs.get(name) == want

    return match


def _prefix(name: str, want: str) -> Predicate:
    def match(attrs: Attributes) -> bool:
        value = attrs.get(name)
        return isinstance(value, str) and value.startswith(want)

    return match


def _all(*preds: Predicate) -> Predicate:
    def match(attrs: Attributes) -> bool:
        return all(p(attrs) for p in preds)

    return match


def _any(*preds: Predicate) -> Predicate:
    def match(attrs: Attributes) -> bool:
        return any(p(attrs) for p in preds)

    return match


def _three_clauses_fused(attrs: Attributes) -> bool:
    source = attrs.get("source")
    return (
        attrs.get("type") == "com.example.a"
        and isinstance(source, str)
        and source.startswith("https://")
        and attrs.get("subject") in ("order-42", "order-43")
    )


def _functions_by_hand(attrs: Attributes) -> bool:
    kind, subject, source = attrs.get("type"), attrs.get("subject"), attrs.get("source")
    if not (isinstance(kind, str) and isinstance(subject, str) and isinstance(source, str)):
        return False
    joined = source + "/" + subject
    return (
        kind.lower() == "com.example.a"
        and len(subject) > 3
        and joined.startswith("https://")
        and "/order-" in joined[8:]
    )


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    expression: str
    by_hand: Predicate  # composed like dialect filters: a closure per clause
    fused: Predicate  # the fastest plain Python: one closure, no calls per clause
    dialect_spec: object | None  # a core.contract.FilterSpec, when a dialect can express it


def cases() -> list[Case]:
    try:
        from kbroker.core.contract import FilterSpec
    except ImportError:  # pragma: no cover - core.contract is part of the project
        return []
    return [
        Case(
            "single equality",
            "type = 'com.example.a'",
            _exact("type", "com.example.a"),
            lambda attrs: attrs.get("type") == "com.example.a",
            FilterSpec("exact", attributes=(("type", "com.example.a"),)),
        ),
        Case(
            "AND of =, LIKE, IN",
            "type = 'com.example.a' AND source LIKE 'https://%' "
            "AND subject IN ('order-42', 'order-43')",
            _all(
                _exact("type", "com.example.a"),
                _prefix("source", "https://"),
                _any(_exact("subject", "order-42"), _exact("subject", "order-43")),
            ),
            _three_clauses_fused,
            FilterSpec(
                "all",
                children=(
                    FilterSpec("exact", attributes=(("type", "com.example.a"),)),
                    FilterSpec("prefix", attributes=(("source", "https://"),)),
                    FilterSpec(
                        "any",
                        children=(
                            FilterSpec("exact", attributes=(("subject", "order-42"),)),
                            FilterSpec("exact", attributes=(("subject", "order-43"),)),
                        ),
                    ),
                ),
            ),
        ),
        Case(
            "functions",
            "LOWER(type) = 'com.example.a' AND LENGTH(subject) > 3 "
            "AND CONCAT(source, '/', subject) LIKE 'https://%/order-%'",
            _functions_by_hand,
            _functions_by_hand,
            None,
        ),
    ]


def rates(predicates: list[Predicate], seconds: float, event: Attributes = EVENT) -> list[float]:
    """Evaluations per second of each predicate: the best of many short rounds, the rounds of
    all predicates interleaved so that load from elsewhere on the machine hits them alike."""
    batch = 20_000
    best = [0.0] * len(predicates)
    deadline = time.perf_counter() + seconds * len(predicates)
    while True:
        for index, predicate in enumerate(predicates):
            start = time.perf_counter()
            for _ in range(batch):
                predicate(event)
            best[index] = max(best[index], batch / (time.perf_counter() - start))
        if time.perf_counter() >= deadline:
            return best


def measure(seconds_per_case: float = 1.0) -> list[dict[str, object]]:
    """Evaluations/s of each case: compiled CESQL, dialect-style closures, one fused closure and
    (when it can express the case) core.filters."""
    rows: list[dict[str, object]] = []
    for case in cases():
        compiled = cesql.compile_filter(case.expression)
        real = _core_filter(case.dialect_spec)
        contenders = [compiled, case.by_hand, case.fused, *([real] if real else [])]
        if not all(p(EVENT) for p in contenders):
            raise AssertionError(f"{case.name}: the benchmark event must match")
        measured = rates(contenders, seconds_per_case / len(contenders))
        cesql_rate, hand_rate, fused_rate = measured[:3]
        row: dict[str, object] = {
            "case": case.name,
            "expression": case.expression,
            "cesql_per_s": round(cesql_rate),
            "dialect_closures_per_s": round(hand_rate),
            "fused_python_per_s": round(fused_rate),
            "cesql_slowdown": round(hand_rate / cesql_rate, 2),
            "cesql_slowdown_vs_fused": round(fused_rate / cesql_rate, 2),
        }
        if real is not None:
            row["core_filters_per_s"] = round(measured[3])
        rows.append(row)
    return rows


def _core_filter(spec: object | None) -> Predicate | None:
    if spec is None:
        return None
    try:
        from kbroker.core import filters
    except ImportError:
        return None
    built: Predicate = filters.build([spec])  # type: ignore[list-item]
    return built


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 1.0
    for row in measure(seconds):
        print(f"{row['case']}: {row['expression']}")
        print(f"  cesql                      {row['cesql_per_s']:>12,}/s")
        print(
            f"  dialect-style closures     {row['dialect_closures_per_s']:>12,}/s"
            f"   (CESQL takes x{row['cesql_slowdown']} their time)"
        )
        print(
            f"  one fused Python closure   {row['fused_python_per_s']:>12,}/s"
            f"   (CESQL takes x{row['cesql_slowdown_vs_fused']} its time)"
        )
        real = row.get("core_filters_per_s")
        if isinstance(real, int):
            print(f"  core.filters dialects      {real:>12,}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
