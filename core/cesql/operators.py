"""Builders for atoms, unary, arithmetic, comparison and logical operators (see `compiler`).

Each builder picks, at compile time, the closure variant that does only the casts the operand
types require, so the common cases (`attr = 'literal'`, integer arithmetic on integers) run
without calling a cast at all.

Integer semantics: `/` truncates toward zero and `%` takes the dividend's sign (C and Go, not
Python's floor division); division or modulo by zero is 0 with a math error; `+ - *` and unary
minus wrap around int32 as Go's int32 does, so -(-2147483648) stays -2147483648.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Final

from kbroker.core.cesql import ast, casts
from kbroker.core.cesql.casts import INT32_MAX, INT32_MIN, Value
from kbroker.core.cesql.errors import Abort, CesqlError
from kbroker.core.cesql.nodes import Attributes, Builder, Fn, Node, Pred, coerce, missing

Op = Callable[[Value, Value], Value]


# -- integer arithmetic -------------------------------------------------------------------------
def add32(x: int, y: int) -> int:
    r = x + y
    return r if INT32_MIN <= r <= INT32_MAX else casts.wrap32(r)


def sub32(x: int, y: int) -> int:
    r = x - y
    return r if INT32_MIN <= r <= INT32_MAX else casts.wrap32(r)


def mul32(x: int, y: int) -> int:
    r = x * y
    return r if INT32_MIN <= r <= INT32_MAX else casts.wrap32(r)


def div32(x: int, y: int) -> int:
    if y == 0:
        raise Abort(CesqlError("math", "division by zero"), 0)
    q = abs(x) // abs(y)
    return casts.wrap32(-q if (x < 0) != (y < 0) else q)


def mod32(x: int, y: int) -> int:
    if y == 0:
        raise Abort(CesqlError("math", "modulo by zero"), 0)
    r = abs(x) % abs(y)
    return -r if x < 0 else r


def neg32(x: int) -> int:
    return casts.wrap32(-x)


ARITHMETIC: Final[dict[str, Callable[[int, int], int]]] = {
    "+": add32,
    "-": sub32,
    "*": mul32,
    "/": div32,
    "%": mod32,
}
COMPARISON: Final[dict[str, Op]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def binary(left: Node, right: Node, target: casts.Type, op: Op) -> Fn:
    """Evaluate and cast the left operand, then the right one, then apply `op`."""
    lf = coerce(left, target)
    if right.constant is not None and right.type is target:
        rv = right.constant[0]
        return lambda a: op(lf(a), rv)
    rf = coerce(right, target)
    return lambda a: op(lf(a), rf(a))


# -- builders -----------------------------------------------------------------------------------
def constant(expr: ast.Constant, build: Builder) -> Node:
    value = expr.value
    return Node(lambda a: value, value.__class__, const=True)


def attribute(expr: ast.Attribute, build: Builder) -> Node:
    name = expr.name

    def read(a: Attributes) -> Value:
        value = a.get(name)
        if value is None:
            raise missing(name)
        return value

    return Node(read, None, attribute=name)


def exists(expr: ast.Exists, build: Builder) -> Node:
    name = expr.name

    def present(a: Attributes) -> bool:
        return a.get(name) is not None

    return Node(present, bool, pred=present)


def not_(expr: ast.Not, build: Builder) -> Node:
    operand = build(expr.operand)
    fn = coerce(operand, bool)
    return Node(lambda a: not fn(a), bool, const=operand.const)


def negate(expr: ast.Negate, build: Builder) -> Node:
    operand = build(expr.operand)
    fn = coerce(operand, int)
    return Node(lambda a: neg32(fn(a)), int, const=operand.const)  # type: ignore[arg-type]


def arithmetic(expr: ast.Arithmetic, build: Builder) -> Node:
    left, right = build(expr.left), build(expr.right)
    fn = binary(left, right, int, ARITHMETIC[expr.op])  # type: ignore[arg-type]
    return Node(fn, int, const=left.const and right.const)


def comparison(expr: ast.Comparison, build: Builder) -> Node:
    left, right = build(expr.left), build(expr.right)
    op = COMPARISON[expr.op]
    const = left.const and right.const
    if expr.op not in ("=", "!=", "<>"):
        return Node(binary(left, right, int, op), bool, const=const)
    if right.constant is not None:
        if left.attribute is not None:
            return _attribute_equals(left.attribute, right.constant[0], op is operator.eq)
        # The right side cannot fail, so casting the left first reports the same error.
        return Node(binary(left, right, right.type, op), bool, const=const)
    # `=` casts the left operand to the right one's type: both are evaluated before that cast.
    lf, rf, cast = left.fn, right.fn, casts.cast
    if right.type is not None and left.type is right.type:
        return Node(lambda a: op(lf(a), rf(a)), bool, const=const)

    def evaluate_then_cast(a: Attributes) -> Value:
        x = lf(a)
        y = rf(a)
        return op(cast(x, y.__class__), y)

    return Node(evaluate_then_cast, bool, const=const)


def _attribute_equals(name: str, literal: Value, equal: bool) -> Node:
    """`attr = literal` / `attr != literal`: the most common filter, one closure, no cast call
    when the attribute already has the literal's type."""
    kind, cast = literal.__class__, casts.CASTS[literal.__class__]

    def fn(a: Attributes) -> bool:
        value = a.get(name)
        if value.__class__ is kind:
            return (value == literal) is equal
        if value is None:
            raise missing(name)
        return (cast(value) == literal) is equal

    if kind is not str:
        return Node(fn, bool)
    # Casting to String never fails, so a missing attribute is the only possible error.

    def pred_equal(a: Attributes) -> bool:
        value = a.get(name)
        if value == literal:  # only a string can equal the string literal
            return True
        return value.__class__ is not str and value is not None and cast(value) == literal

    def pred_not_equal(a: Attributes) -> bool:
        value = a.get(name)
        if value.__class__ is str:
            return value != literal
        return value is not None and cast(value) != literal

    return Node(fn, bool, pred=pred_equal if equal else pred_not_equal)


def logical(expr: ast.Logical, build: Builder) -> Node:
    operands = [build(e) for e in expr.operands]
    fns = [coerce(n, bool) for n in operands]
    const = all(n.const for n in operands)
    if expr.op == "XOR":

        def xor(a: Attributes) -> bool:
            result = False
            for f in fns:
                result = result is not f(a)
            return result

        return Node(xor, bool, const=const)
    if expr.op == "OR":
        return Node(_any(fns), bool, const=const)  # type: ignore[arg-type]
    # AND is true without error only if every operand is, in order: so as a filter it is the
    # chain of the operands' predicates (an operand's own predicate only holds when it is
    # Boolean: 1 is true here, not `true`), with one guard for operands that may raise.
    preds = [
        n.pred if n.pred is not None and n.type is bool else f
        for n, f in zip(operands, fns, strict=True)
    ]
    return Node(_all(fns), bool, const=const, pred=_guarded_all(preds))  # type: ignore[arg-type]


def _all(fns: list[Pred]) -> Pred:
    """Short-circuit AND over operands already cast to Boolean; unrolled for short chains."""
    if len(fns) == 2:
        f1, f2 = fns
        return lambda a: f1(a) and f2(a)
    if len(fns) == 3:
        f1, f2, f3 = fns
        return lambda a: f1(a) and f2(a) and f3(a)
    return lambda a: all(f(a) for f in fns)


def _guarded_all(fns: list[Pred]) -> Pred:
    """`_all` as a filter: an error anywhere means no match (one try, free when nothing raises)."""
    if len(fns) == 2:
        f1, f2 = fns

        def all2(a: Attributes) -> bool:
            try:
                return f1(a) and f2(a)
            except Abort:
                return False

        return all2
    if len(fns) == 3:
        f1, f2, f3 = fns

        def all3(a: Attributes) -> bool:
            try:
                return f1(a) and f2(a) and f3(a)
            except Abort:
                return False

        return all3

    def all_n(a: Attributes) -> bool:
        try:
            return all(f(a) for f in fns)
        except Abort:
            return False

    return all_n


def _any(fns: list[Pred]) -> Pred:
    if len(fns) == 2:
        f1, f2 = fns
        return lambda a: f1(a) or f2(a)
    if len(fns) == 3:
        f1, f2, f3 = fns
        return lambda a: f1(a) or f2(a) or f3(a)
    return lambda a: any(f(a) for f in fns)


BUILDERS: Final[dict[type, Callable[..., Node]]] = {
    ast.Constant: constant,
    ast.Attribute: attribute,
    ast.Exists: exists,
    ast.Not: not_,
    ast.Negate: negate,
    ast.Arithmetic: arithmetic,
    ast.Comparison: comparison,
    ast.Logical: logical,
}
