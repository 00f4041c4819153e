"""The compiled form of a subexpression, shared by the compiler's builder modules.

Why separate: `operators` and `selections` build `Node`s and the compiler folds and wraps them;
keeping the value type apart lets each builder module import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kbroker.core.cesql import ast, casts
from kbroker.core.cesql.casts import Type, Value
from kbroker.core.cesql.errors import Abort, CesqlError

Attributes = Mapping[str, Value]
Fn = Callable[[Attributes], Value]
Pred = Callable[[Attributes], bool]


@dataclass(frozen=True, slots=True)
class Node:
    """One compiled subexpression."""

    fn: Fn  # the value; raises Abort on the first error
    type: Type  # static result type; None when only known per event (a bare attribute)
    const: bool = False  # reads no attribute: the compiler folds it to a constant
    pred: Pred | None = None  # "is Boolean true with no error", never raises; None: use fn
    attribute: str | None = None  # set when this node is a bare attribute read
    constant: tuple[Value] | None = None  # the folded value, when const and error-free


Builder = Callable[[ast.Expr], Node]


def missing(name: str) -> Abort:
    return Abort(CesqlError("missingAttribute", f"attribute {name!r} is not in the event"))


def coerce(node: Node, target: Type) -> Fn:
    """One closure computing `node`'s value cast to `target` (None: uncast).

    Fused for the common operands, so evaluation pays no separate call for the cast: constants
    are cast now, attributes are read and cast in one step, typed values skip the cast.
    """
    if target is None or node.type is target:
        return node.fn
    cast = casts.CASTS[target]
    if node.constant is not None:
        try:
            value = cast(node.constant[0])
        except Abort as abort:
            error, zero = abort.error, abort.value

            def fail(a: Attributes) -> Value:
                raise Abort(error, zero)

            return fail
        return lambda a: value
    name = node.attribute
    if name is None:
        fn = node.fn
        return lambda a: cast(fn(a))

    def read_cast(a: Attributes) -> Value:
        value = a.get(name)
        if value.__class__ is target:
            return value
        if value is None:
            raise missing(name)
        return cast(value)

    return read_cast
