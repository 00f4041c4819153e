"""Knative Trigger filters, compiled once per contract generation into plain closures.

Semantics (Knative's Trigger filters): the legacy `filter.attributes` ANDs exact string
matches where `""` means "present and non-empty" (MT/spec behaviour, not the Kafka broker's); the
`filters` dialects `exact`, `prefix`, `suffix` need the attribute present; `all`, `any`, `not` nest;
`cesql` must evaluate to Boolean true without errors. A top-level list is an implicit `all`, and an
empty list passes everything.

What this module refuses to do: open failure. A filter that cannot be built (unknown dialect, an
unparsable CESQL expression) matches nothing, where Knative's MT broker would skip it and so let
more events through than the user asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from kbroker.core import cesql
from kbroker.core.contract import FilterSpec
from kbroker.core.events import AttrValue, attr_string

log = logging.getLogger(__name__)

Attributes = Mapping[str, AttrValue]
Predicate = Callable[[Attributes], bool]

# Knative looks `schemaurl` (0.3) and `dataschema` (1.0) up as one attribute.
_ALIASES = {"schemaurl": "dataschema", "dataschema": "schemaurl"}


def _always(_: Attributes) -> bool:
    return True


def _never(_: Attributes) -> bool:
    return False


def lookup(attrs: Attributes, name: str) -> str | None:
    """An attribute's string form as filters compare it; None when the event lacks it."""
    value = attrs.get(name)
    if value is None and name in _ALIASES:
        value = attrs.get(_ALIASES[name])
    if value is None:
        return None
    return value if isinstance(value, str) else attr_string(value)


def legacy_matches(got: str | None, want: str) -> bool:
    """One `filter.attributes` entry: equal, or for `""` present and non-empty."""
    return got is not None and (got == want if want else got != "")


# The string dialects' comparisons, shared with core/explain so both always agree.
COMPARES: dict[str, Callable[[str, str], bool]] = {
    "exact": lambda got, want: got == want,
    "prefix": str.startswith,
    "suffix": str.endswith,
}


def build(specs: Sequence[FilterSpec]) -> Predicate:
    """One predicate for a Trigger's effective filter list (implicit AND)."""
    return _all([_build_one(s) for s in specs])


def _build_one(spec: FilterSpec) -> Predicate:
    try:
        builder = _BUILDERS[spec.dialect]
    except KeyError:
        log.warning("unknown filter dialect %r: the trigger matches nothing", spec.dialect)
        return _never
    return builder(spec)


def _all(preds: list[Predicate]) -> Predicate:
    preds = [p for p in preds if p is not _always]
    if not preds:
        return _always
    if len(preds) == 1:
        return preds[0]
    if _never in preds:
        return _never

    def match_all(attrs: Attributes) -> bool:
        return all(p(attrs) for p in preds)

    return match_all


def _legacy_attributes(spec: FilterSpec) -> Predicate:
    checks = list(spec.attributes)
    if not checks:
        return _always
    if len(checks) == 1 and checks[0][1]:
        name, want = checks[0]

        def match_one(attrs: Attributes) -> bool:
            return lookup(attrs, name) == want

        return match_one

    def match_attributes(attrs: Attributes) -> bool:
        return all(legacy_matches(lookup(attrs, name), want) for name, want in checks)

    return match_attributes


def _string_dialect(test: Callable[[str, str], bool]) -> Callable[[FilterSpec], Predicate]:
    def build_dialect(spec: FilterSpec) -> Predicate:
        # MT drops entries with an empty value (they act as true); so do we, for parity.
        checks = [(k, v) for k, v in spec.attributes if v]
        if not checks:
            return _always

        def match(attrs: Attributes) -> bool:
            for name, want in checks:
                got = lookup(attrs, name)
                if got is None or not test(got, want):
                    return False
            return True

        return match

    return build_dialect


def _any(spec: FilterSpec) -> Predicate:
    preds = [_build_one(c) for c in spec.children]
    if not preds:
        return _always
    if _always in preds:
        return _always

    def match_any(attrs: Attributes) -> bool:
        return any(p(attrs) for p in preds)

    return match_any


def _not(spec: FilterSpec) -> Predicate:
    if len(spec.children) != 1:
        log.warning("`not` filter needs exactly one child: the trigger matches nothing")
        return _never
    inner = _build_one(spec.children[0])

    def match_not(attrs: Attributes) -> bool:
        return not inner(attrs)

    return match_not


def _cesql(spec: FilterSpec) -> Predicate:
    try:
        compiled: Predicate = cesql.compile_filter(spec.expression)
    except Exception as exc:  # fail closed: whatever went wrong, this filter matches nothing
        log.warning("CESQL filter %r cannot be built (%s): matches nothing", spec.expression, exc)
        return _never
    return compiled


_BUILDERS: dict[str, Callable[[FilterSpec], Predicate]] = {
    "attributes": _legacy_attributes,
    "exact": _string_dialect(COMPARES["exact"]),
    "prefix": _string_dialect(COMPARES["prefix"]),
    "suffix": _string_dialect(COMPARES["suffix"]),
    "all": lambda spec: _all([_build_one(c) for c in spec.children]),
    "any": _any,
    "not": _not,
    "cesql": _cesql,
}
