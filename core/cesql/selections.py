"""Builders for LIKE, IN and function calls (see `compiler`).

IN casts each item to the *left* value's type (cesql/spec.md §3.7) and stops at the first match,
so an item that fails to cast only counts when no earlier item matched. When every item is a
constant, the casts are done here, once per possible left type, leaving a set lookup per event.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Final

from kbroker.core.cesql import ast, casts, functions
from kbroker.core.cesql.casts import Value
from kbroker.core.cesql.errors import Abort, CesqlError
from kbroker.core.cesql.like import compile_like
from kbroker.core.cesql.like import shape as like_shape
from kbroker.core.cesql.nodes import Attributes, Builder, Fn, Node, Pred, coerce, missing

# Per left type: (the cast items before the first failing cast, that cast's Abort or None).
Table = dict[type, tuple[frozenset[Value], Abort | None]]
StrFn = Callable[[Attributes], str]


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

        def pred_like(a: Attributes) -> bool:
            value = a.get(name)
            if value.__class__ is str:
                return matcher(value)
            return value is not None and matcher(to_str(value))

        def pred_not_like(a: Attributes) -> bool:
            value = a.get(name)
            if value.__class__ is str:
                return not matcher(value)
            return value is not None and not matcher(to_str(value))

        known = None if negated else like_shape(expr.pattern)
        pred = _prefix_pred(name, known[1]) if known and known[0] == "prefix" else None
        return Node(attribute_like, bool, pred=pred or (pred_not_like if negated else pred_like))
    fn = coerce(operand, str)
    return Node(lambda a: matcher(fn(a)) is not negated, bool, const=operand.const)  # type: ignore[arg-type]


def _prefix_pred(name: str, prefix: str) -> Pred:
    """`attr LIKE 'prefix%'`, the dialect `prefix` filter in CESQL: inlined, no matcher call."""
    to_str = casts.to_str

    def pred(a: Attributes) -> bool:
        value = a.get(name)
        if value.__class__ is str:
            return value.startswith(prefix)
        return value is not None and to_str(value).startswith(prefix)

    return pred


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
        entry = table.get(x.__class__)
        if entry is None:  # not a CESQL type (the codec never produces one): no item equals it
            return negated
        found, failure = entry
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
            entry = table.get(value.__class__)
            return entry is not None and value in entry[0]

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
    types = functions.param_types(function, len(args))
    fns = [coerce(n, t) for n, t in zip(args, types, strict=True)]
    const = all(n.const for n in args)
    if function.name == "CONCAT" and len(fns) in (2, 3):  # the usual way to build a string
        return Node(_concat(typing.cast(list[StrFn], fns)), str, const=const)
    impl = _own_errors(function.impl, expr) if function.may_fail else function.impl
    return Node(_invoke(impl, fns), function.returns, const=const)


def _concat(fns: list[StrFn]) -> Fn:
    """CONCAT of two or three arguments (already Strings) without a call to a join function."""
    if len(fns) == 2:
        f1, f2 = fns
        return lambda a: f1(a) + f2(a)
    f1, f2, f3 = fns
    return lambda a: f1(a) + f2(a) + f3(a)


def _invoke(impl: Callable[..., Value], fns: list[Fn]) -> Fn:
    """Evaluate (and cast) each argument left to right, then call; unrolled for short lists."""
    if len(fns) == 1:
        (f1,) = fns
        return lambda a: impl(f1(a))
    if len(fns) == 2:
        f1, f2 = fns
        return lambda a: impl(f1(a), f2(a))
    if len(fns) == 3:
        f1, f2, f3 = fns
        return lambda a: impl(f1(a), f2(a), f3(a))
    return lambda a: impl(*[f(a) for f in fns])


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
