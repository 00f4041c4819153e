"""Builders for LIKE, IN and function calls (see `compiler`).

IN casts each item to the *left* value's type (cesql/spec.md §3.7) and stops at the first match,
so an item that fails to cast only counts when no earlier item matched. When every item is a
constant, the casts are done here, once per possible left type, leaving a set lookup per event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from core.cesql import ast, casts, functions
from core.cesql.casts import Value
from core.cesql.errors import Abort, CesqlError
from core.cesql.like import compile_like
from core.cesql.nodes import Attributes, Builder, Fn, Node, Pred, missing
from core.cesql.operators import cast_for

# Per left type: (the cast items before the first failing cast, that cast's Abort or None).
Table = dict[type, tuple[frozenset[Value], Abort | None]]


def like(expr: ast.Like, build: Builder) -> Node:
    operand = build(expr.operand)
    matcher, negated = compile_like(expr.pattern), expr.negated
    name = operand.attribute
    if name is not None:
        to_str = casts.to_str

        def attribute_like(a: Attributes) -> bool:
            value = a.get(name)
            if value.__class__ is str:
                return matcher(value) is not negated
            if value is None:
                raise missing(name)
            return matcher(to_str(value)) is not negated

        def pred(a: Attributes) -> bool:
            value = a.get(name)
            if value.__class__ is str:
                return matcher(value) is not negated
            return value is not None and matcher(to_str(value)) is not negated

        return Node(attribute_like, bool, pred=pred)
    fn = operand.fn
    if operand.type is not str:
        inner, to_str = fn, casts.to_str
        fn = lambda a: to_str(inner(a))  # noqa: E731
    return Node(lambda a: matcher(fn(a)) is not negated, bool, const=operand.const)  # type: ignore[arg-type]


def in_(expr: ast.In, build: Builder) -> Node:
    operand = build(expr.operand)
    items = [build(e) for e in expr.items]
    negated = expr.negated
    const = operand.const and all(i.const for i in items)
    if all(i.constant is not None for i in items):
        table = _table([i.constant[0] for i in items])  # type: ignore[index]
        return _constant_in(operand, table, negated, const)
    lf, fns = operand.fn, [i.fn for i in items]
    cast = casts.cast

    def member(a: Attributes) -> bool:
        x = lf(a)
        kind = x.__class__
        for f in fns:
            if cast(f(a), kind) == x:
                return not negated
        return negated

    return Node(member, bool, const=const)


def _table(values: list[Value]) -> Table:
    table: Table = {}
    for kind in (str, int, bool):
        found: set[Value] = set()
        failure = None
        for value in values:
            try:
                found.add(casts.CASTS[kind](value))
            except Abort as abort:
                failure = abort
                break
        table[kind] = (frozenset(found), failure)
    return table


def _constant_in(operand: Node, table: Table, negated: bool, const: bool) -> Node:
    lf, name = operand.fn, operand.attribute
    strings = table[str][0]

    def member(a: Attributes) -> bool:
        x = lf(a)
        found, failure = table[x.__class__]
        if x in found:
            return not negated
        if failure is not None:
            raise Abort(failure.error, failure.value)
        return negated

    pred: Pred | None = None
    if name is not None and not negated:

        def pred(a: Attributes) -> bool:
            value = a.get(name)
            if value.__class__ is str:
                return value in strings
            if value is None:
                return False
            return value in table[value.__class__][0]

    return Node(member, bool, const=const, pred=pred)


def call(expr: ast.Call, build: Builder) -> Node:
    function = functions.resolve(expr.name, len(expr.args))
    if function is None:
        error = CesqlError(
            "missingFunction", f"no function {expr.name} taking {len(expr.args)} argument(s)"
        )

        def unknown(a: Attributes) -> Value:
            raise Abort(error, False, expr)

        return Node(unknown, None, const=True)
    args = [build(e) for e in expr.args]
    fns = [n.fn for n in args]
    cs = [
        None if t is None else cast_for(n, t)
        for n, t in zip(args, functions.param_types(function, len(args)), strict=True)
    ]
    impl = _own_errors(function.impl, expr) if function.may_fail else function.impl
    return Node(_invoke(impl, fns, cs), function.returns, const=all(n.const for n in args))


def _invoke(
    impl: Callable[..., Value], fns: list[Fn], cs: list[Callable[[Value], Value] | None]
) -> Fn:
    """Evaluate every argument left to right, then cast each, then call."""
    if len(fns) == 1:
        (f1,), (c1,) = fns, cs
        if c1 is None:
            return lambda a: impl(f1(a))
        return lambda a: impl(c1(f1(a)))
    pairs = list(zip(fns, cs, strict=True))

    def invoke(a: Attributes) -> Value:
        values = [f(a) for f in fns]
        return impl(*[v if c is None else c(v) for v, (_, c) in zip(values, pairs, strict=True)])

    return invoke


def _own_errors(impl: Callable[..., Value], origin: ast.Call) -> Callable[..., Value]:
    """Tag errors the function itself raises (not its arguments'), so a root call reports the
    value the function returns with its error."""

    def tagged(*args: Value) -> Value:
        try:
            return impl(*args)
        except Abort as abort:
            abort.origin = origin
            raise

    return tagged


BUILDERS: Final[dict[type, Callable[..., Node]]] = {
    ast.Like: like,
    ast.In: in_,
    ast.Call: call,
}
