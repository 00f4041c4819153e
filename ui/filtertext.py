"""A Trigger's effective filter in one line for people, and what event types it can pass.

The Trigger page shows the filter the dispatcher runs (from the contract); the topology labels
each edge with a short summary and needs to know when a filter reduces to a set of `type`
values. Anything it cannot reduce exactly (prefix, CESQL, not, any over other attributes) is an
"expression": the graph says so instead of guessing, which is what users of other consoles
were misled by.
"""

from __future__ import annotations

from collections.abc import Sequence

from kbroker.core.contract import FilterSpec


def describe(specs: Sequence[FilterSpec]) -> str:
    """The filter list (an implicit all) as one readable line."""
    if not specs:
        return "every event"
    parts = [_one(s) for s in specs]
    return parts[0] if len(parts) == 1 else " AND ".join(f"({p})" for p in parts)


def _one(spec: FilterSpec) -> str:
    d = spec.dialect
    if d in ("attributes", "exact"):
        if not spec.attributes:
            return "every event"
        return " AND ".join(
            f"{k} present" if v == "" and d == "attributes" else f"{k} = {v!r}"
            for k, v in spec.attributes
        )
    if d in ("prefix", "suffix"):
        word = "starts with" if d == "prefix" else "ends with"
        return " AND ".join(f"{k} {word} {v!r}" for k, v in spec.attributes)
    if d in ("all", "any"):
        glue = " AND " if d == "all" else " OR "
        inner = [_one(c) for c in spec.children]
        return glue.join(f"({p})" for p in inner) if inner else "every event"
    if d == "not":
        return f"NOT ({_one(spec.children[0])})" if spec.children else "no event"
    if d == "cesql":
        return f"CESQL: {spec.expression}"
    return d


def types_of(specs: Sequence[FilterSpec]) -> frozenset[str] | None:
    """The exact set of `type` values the filter requires, or None when it is not that simple
    (no filter, other attributes only, prefixes, CESQL...): the caller then says "expression"."""
    found: frozenset[str] | None = None
    for spec in specs:
        own = _types(spec)
        if own is None:
            continue  # this part does not constrain the type in a way we can state
        found = own if found is None else found & own
    return found


def _types(spec: FilterSpec) -> frozenset[str] | None:
    if spec.dialect in ("attributes", "exact"):
        values = {v for k, v in spec.attributes if k == "type" and v != ""}
        return frozenset(values) if values else None
    if spec.dialect == "all":
        return types_of(spec.children)
    if spec.dialect == "any":
        sets = [_types(c) for c in spec.children]
        if not sets or any(s is None for s in sets):
            return None
        return frozenset().union(*(s for s in sets if s is not None))
    return None


def is_expression(specs: Sequence[FilterSpec]) -> bool:
    """True when the filter is more than exact attribute matches (the graph labels it so)."""
    return any(_complex(s) for s in specs)


def _complex(spec: FilterSpec) -> bool:
    if spec.dialect in ("attributes", "exact"):
        return False
    if spec.dialect in ("all", "any"):
        return any(_complex(c) for c in spec.children) or spec.dialect == "any"
    return True
