"""Why a Trigger's filter did or did not match an event: the filter evaluated as a tree.

The dispatcher (`core/filters`) compiles filters into closures that answer only yes or no. People
debugging "why was my event not delivered?" need the reason: which `all`/`any`/`not` branch or
attribute failed, and what a CESQL expression evaluated to with which errors. This module walks
the same `FilterSpec` tree and records every node's verdict. It uses the dispatcher's own lookup
and comparisons (`filters.lookup`, `filters.legacy_matches`, `filters.COMPARES`) and CESQL
compiler, so the root's verdict always equals the dispatcher's; a property test holds it to that.

Unlike the dispatcher it does not short-circuit: every child is evaluated so the tree shows all
the reasons at once. Also here: `check_cesql`, the editor's check of an expression (error with
line:col and a caret excerpt, the attributes it references, and lint warnings).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kbroker.core import cesql, filters
from kbroker.core.cesql import ast
from kbroker.core.cesql.compiler import Evaluator
from kbroker.core.cesql.lint import walk
from kbroker.core.contract import FilterSpec
from kbroker.core.events import attr_string

_MAX_VALUE = 200  # characters of an attribute value quoted in a detail line


@dataclass(frozen=True, slots=True)
class Explain:
    """One node of a filter evaluated against one event."""

    kind: str  # all | any | not | exact | prefix | suffix | cesql | attributes | attribute
    label: str  # what this node tests, for people
    matched: bool
    detail: str = ""  # why it matched or not
    children: tuple[Explain, ...] = ()
    value: str | int | bool | None = None  # a CESQL expression's value
    errors: tuple[str, ...] = ()  # a CESQL expression's errors, "kind: message"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "label": self.label,
            "matched": self.matched,
            "detail": self.detail,
        }
        if self.kind == "cesql":
            out["value"] = self.value
            out["errors"] = list(self.errors)
        if self.children:
            out["children"] = [c.to_json() for c in self.children]
        return out

    def lines(self, indent: str = "") -> list[str]:
        """The tree as indented text lines (for the CLI)."""
        mark = "✓" if self.matched else "✗"
        head = f"{indent}{mark} {self.label}" + (f": {self.detail}" if self.detail else "")
        out = [head]
        for child in self.children:
            out.extend(child.lines(indent + "  "))
        return out


def explain(specs: Sequence[FilterSpec], attrs: filters.Attributes) -> Explain:
    """The whole effective filter list (an implicit `all`) evaluated against `attrs`."""
    if not specs:
        return Explain("all", "no filter", True, "every event matches")
    if len(specs) == 1:
        return _one(specs[0], attrs)
    children = tuple(_one(s, attrs) for s in specs)
    return _group("all", "all of", children, all(c.matched for c in children))


def _one(spec: FilterSpec, attrs: filters.Attributes) -> Explain:
    d = spec.dialect
    if d == "attributes":
        return _legacy(spec, attrs)
    if d in filters.COMPARES:
        return _string_dialect(spec, attrs)
    if d == "all":
        children = tuple(_one(c, attrs) for c in spec.children)
        return _group("all", "all of", children, all(c.matched for c in children))
    if d == "any":
        children = tuple(_one(c, attrs) for c in spec.children)
        if not children:
            return Explain("any", "any of", True, "empty: every event matches")
        return _group("any", "any of", children, any(c.matched for c in children))
    if d == "not":
        if len(spec.children) != 1:
            detail = f"`not` needs exactly one filter, has {len(spec.children)}: matches nothing"
            return Explain("not", "not", False, detail)
        inner = _one(spec.children[0], attrs)
        return Explain("not", "not", not inner.matched, "", (inner,))
    if d == "cesql":
        return _cesql(spec.expression, attrs)
    return Explain(d, d, False, f"unknown filter dialect {d!r}: matches nothing")


def _group(kind: str, label: str, children: tuple[Explain, ...], matched: bool) -> Explain:
    hits = sum(c.matched for c in children)
    return Explain(kind, label, matched, f"{hits} of {len(children)} matched", children)


def _quote(value: str) -> str:
    shown = value if len(value) <= _MAX_VALUE else value[:_MAX_VALUE] + "…"
    return "'" + shown.replace("'", "''") + "'"


def _legacy(spec: FilterSpec, attrs: filters.Attributes) -> Explain:
    leaves: list[Explain] = []
    for name, want in spec.attributes:
        got = filters.lookup(attrs, name)
        ok = filters.legacy_matches(got, want)
        label = f"{name} present" if not want else f"{name} = {_quote(want)}"
        if got is None:
            detail = f"attribute {name} missing"
        elif not want:
            detail = f"{name} is {_quote(got)}" + ("" if ok else ", must be non-empty")
        else:
            detail = f"{name} = {_quote(got)}" + ("" if ok else f" expected {_quote(want)}")
        leaves.append(Explain("attribute", label, ok, detail))
    if not leaves:
        return Explain("attributes", "attributes", True, "no attributes: every event matches")
    children = tuple(leaves)
    return _group("attributes", "attributes", children, all(c.matched for c in children))


def _string_dialect(spec: FilterSpec, attrs: filters.Attributes) -> Explain:
    d = spec.dialect
    test = filters.COMPARES[d]
    verb = {"exact": "=", "prefix": "starts with", "suffix": "ends with"}[d]
    leaves: list[Explain] = []
    for name, want in spec.attributes:
        label = f"{name} {verb} {_quote(want)}"
        if not want:  # the dispatcher drops empty values (Knative MT does too)
            leaves.append(Explain("attribute", label, True, "empty value: ignored"))
            continue
        got = filters.lookup(attrs, name)
        if got is None:
            leaves.append(Explain("attribute", label, False, f"attribute {name} missing"))
            continue
        ok = test(got, want)
        detail = f"{name} = {_quote(got)}"
        if not ok:
            detail += f" expected {'' if d == 'exact' else d + ' '}{_quote(want)}"
        leaves.append(Explain("attribute", label, ok, detail))
    if not leaves:
        return Explain(d, d, True, "no attributes: every event matches")
    if len(leaves) == 1:
        leaf = leaves[0]
        return Explain(d, f"{d}: {leaf.label}", leaf.matched, leaf.detail)
    children = tuple(leaves)
    return _group(d, d, children, all(c.matched for c in children))


@functools.lru_cache(maxsize=256)
def _compiled(expression: str) -> Evaluator:
    """Compiled once per expression: a tester explains the same filter on many events."""
    return cesql.compile(expression)


def _cesql(expression: str, attrs: filters.Attributes) -> Explain:
    label = f"cesql: {expression}"
    try:
        evaluate = _compiled(expression)
    except cesql.ParseError as exc:
        return Explain("cesql", label, False, f"not valid CESQL ({exc.message}): matches nothing")
    except Exception as exc:  # the dispatcher fails closed on anything; so do we
        return Explain("cesql", label, False, f"cannot be built ({exc}): matches nothing")
    value, errors = evaluate(attrs)
    matched = value is True and not errors
    shown = attr_string(value) if not isinstance(value, str) else _quote(value)
    texts = tuple(f"{e.kind}: {e.message}" for e in errors)
    if errors:
        detail = f"value {shown} with error {texts[0]}"
    elif matched:
        detail = "value true"
    else:
        detail = f"value {shown}, must be true"
    return Explain("cesql", label, matched, detail, value=value, errors=texts)


# --- the editor's check ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CesqlProblem:
    """A parse error located for people: 1-based line and column plus a caret excerpt."""

    message: str
    line: int
    column: int
    position: int  # 0-based character offset
    excerpt: str  # the offending line windowed, with a caret under the position


@dataclass(frozen=True, slots=True)
class CesqlCheck:
    valid: bool
    error: CesqlProblem | None = None
    attributes: tuple[str, ...] = ()  # referenced attribute names, first use first
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        err = self.error
        return {
            "valid": self.valid,
            "error": None
            if err is None
            else {
                "message": err.message,
                "line": err.line,
                "column": err.column,
                "position": err.position,
                "excerpt": err.excerpt,
            },
            "attributes": list(self.attributes),
            "warnings": list(self.warnings),
        }


def check_cesql(expression: str) -> CesqlCheck:
    """Whether `expression` is valid CESQL, and if so which attributes it reads."""
    try:
        tree = cesql.parse(expression)
        found = cesql.warnings(expression)
    except cesql.ParseError as exc:
        return CesqlCheck(False, _locate(exc))
    except cesql.CesqlError as exc:  # too long or too deep: no position to point at
        return CesqlCheck(False, CesqlProblem(exc.message, 1, 1, 0, ""))
    return CesqlCheck(True, None, referenced(tree), tuple(found))


def referenced(tree: ast.Expr) -> tuple[str, ...]:
    """Attribute names an expression reads (including EXISTS), in order of first use."""
    seen: dict[str, None] = {}
    for node in walk(tree):
        if isinstance(node, ast.Attribute | ast.Exists):
            seen.setdefault(node.name, None)
    return tuple(seen)


def _locate(exc: cesql.ParseError) -> CesqlProblem:
    text, pos = exc.expression, exc.position
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    excerpt = str(exc).split("\n", 1)[1] if "\n" in str(exc) else ""
    return CesqlProblem(exc.message, line, column, pos, excerpt)
