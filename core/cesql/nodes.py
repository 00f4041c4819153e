"""The compiled form of a subexpression, shared by the compiler's builder modules.

Why separate: `operators` and `selections` build `Node`s and the compiler folds and wraps them;
keeping the value type apart lets each builder module import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.cesql import ast
from core.cesql.casts import Type, Value
from core.cesql.errors import Abort, CesqlError

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
