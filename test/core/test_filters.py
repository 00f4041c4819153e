"""Knative filter semantics, table-driven (knative.md §2)."""

from __future__ import annotations

import pytest
from kbroker.core import filters
from kbroker.core.contract import FilterSpec
from kbroker.core.events import AttrValue

EVENT: dict[str, AttrValue] = {
    "specversion": "1.0",
    "id": "1",
    "source": "/orders/eu",
    "type": "com.example.order.created",
    "subject": "",
    "myext": "abc",
    "count": 5,
    "flag": True,
    "dataschema": "https://schemas.example/order",
}


def attrs(**kv: str) -> tuple[tuple[str, str], ...]:
    return tuple(kv.items())


def f(dialect: str, **kv: str) -> FilterSpec:
    return FilterSpec(dialect, attributes=attrs(**kv))


CASES: list[tuple[str, list[FilterSpec], bool]] = [
    ("no filter passes", [], True),
    ("legacy exact match", [f("attributes", type="com.example.order.created")], True),
    ("legacy mismatch", [f("attributes", type="com.example.order")], False),
    ("legacy is case sensitive", [f("attributes", type="COM.example.order.created")], False),
    ("legacy AND of keys", [f("attributes", type="com.example.order.created", myext="x")], False),
    ("legacy empty value = present", [f("attributes", myext="")], True),
    ("legacy empty value, missing attr", [f("attributes", other="")], False),
    ("legacy empty value, empty attr fails (MT)", [f("attributes", subject="")], False),
    ("legacy int extension as string", [f("attributes", count="5")], True),
    ("legacy bool extension as string", [f("attributes", flag="true")], True),
    ("legacy schemaurl alias", [f("attributes", schemaurl="https://schemas.example/order")], True),
    ("exact", [f("exact", source="/orders/eu")], True),
    ("exact missing attribute", [f("exact", missing="x")], False),
    ("prefix", [f("prefix", type="com.example.")], True),
    ("prefix miss", [f("prefix", type="org.")], False),
    ("prefix missing attribute", [f("prefix", missing="x")], False),
    ("suffix", [f("suffix", type=".created")], True),
    ("suffix miss", [f("suffix", type=".deleted")], False),
    ("suffix missing attribute", [f("suffix", missing="x")], False),
    ("empty dialect value acts as true", [f("exact", type="")], True),
    ("top-level list is AND", [f("prefix", type="com."), f("suffix", type=".deleted")], False),
    (
        "all",
        [FilterSpec("all", children=(f("prefix", type="com."), f("exact", myext="abc")))],
        True,
    ),
    ("all empty is true", [FilterSpec("all")], True),
    (
        "any",
        [FilterSpec("any", children=(f("exact", type="x"), f("exact", myext="abc")))],
        True,
    ),
    (
        "any none",
        [FilterSpec("any", children=(f("exact", type="x"), f("exact", myext="y")))],
        False,
    ),
    ("any empty is true", [FilterSpec("any")], True),
    ("not", [FilterSpec("not", children=(f("exact", type="x"),))], True),
    ("not of a match", [FilterSpec("not", children=(f("exact", myext="abc"),))], False),
    ("not without child fails closed", [FilterSpec("not")], False),
    ("unknown dialect fails closed", [FilterSpec("regex", attributes=attrs(type=".*"))], False),
    (
        "nested",
        [
            FilterSpec(
                "all",
                children=(
                    FilterSpec("any", children=(f("exact", type="a"), f("suffix", source="/eu"))),
                    FilterSpec("not", children=(f("exact", myext="zzz"),)),
                ),
            )
        ],
        True,
    ),
]


@pytest.mark.parametrize(("specs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_filter(specs: list[FilterSpec], expected: bool) -> None:
    assert filters.build(specs)(EVENT) is expected


def test_unbuildable_cesql_fails_closed() -> None:
    pred = filters.build([FilterSpec("cesql", expression="type = ")])
    assert pred(EVENT) is False
