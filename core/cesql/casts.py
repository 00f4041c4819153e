"""CESQL's three types, their zero values, int32 arithmetic and the six casts between them.

Why one module: operators, functions, the compiler and the reference interpreter must agree
exactly on casting (cesql/spec.md §3.7), so every cast lives here once. Casts raise `Abort` with a
cast error and the zero value of the target type.

Attribute values are `str | int | bool`. `bool` is a subclass of `int` in Python, so types are
told apart with `value.__class__ is ...`, never `isinstance`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from kbroker.core.cesql.errors import Abort, CesqlError

Value = str | int | bool
Type = type[str] | type[int] | type[bool] | None  # None: only known per event (an attribute)
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
# Python's int() also takes spaces, '_' and non-ASCII digits; the spec wants sign + ASCII digits.
_INTEGER: Final = re.compile(r"[+-]?0*([0-9]{1,10})\Z")


def wrap32(value: int) -> int:
    """Two's-complement int32 wrap-around, as Go's int32 arithmetic (Knative parity)."""
    return ((value - INT32_MIN) & 0xFFFFFFFF) + INT32_MIN


def type_name(t: Type) -> str:
    return {str: "String", int: "Integer", bool: "Boolean"}.get(t, "Boolean")  # type: ignore[arg-type]


def zero(t: Type) -> Value:
    """The zero value of `t`; an unknown type is Boolean (a missing attribute is `false`)."""
    if t is str:
        return ""
    if t is int:
        return 0
    return False


def _fail(value: object, target: Type) -> Abort:
    shown = repr(value) if value.__class__ is str else to_str(value)  # type: ignore[arg-type]
    return Abort(
        CesqlError(
            "cast",
            f"cannot cast {type_name(value.__class__)} {shown} to {type_name(target)}",  # type: ignore[arg-type]
        ),
        zero(target),
    )


def to_str(value: Value) -> str:
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[return-value]
    if cls is bool:
        return "true" if value else "false"
    return str(value)


def to_int(value: Value) -> int:
    cls = value.__class__
    if cls is int:
        return value  # type: ignore[return-value]
    if cls is bool:
        return 1 if value else 0
    if cls is str:
        match = _INTEGER.match(value)  # type: ignore[arg-type]
        if match is not None:
            number = int(match.group(1))
            if value.startswith("-"):  # type: ignore[union-attr]
                number = -number
            if INT32_MIN <= number <= INT32_MAX:
                return number
    raise _fail(value, int)


def to_bool(value: Value) -> bool:
    cls = value.__class__
    if cls is bool:
        return value  # type: ignore[return-value]
    if cls is int:
        return value != 0
    if cls is str and value.isascii():  # type: ignore[union-attr]
        lowered = value.lower()  # type: ignore[union-attr]
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    raise _fail(value, bool)


def cast(value: Value, target: Type) -> Value:
    """Cast to `target`; None means 'keep the value's own type'."""
    if target is str:
        return to_str(value)
    if target is int:
        return to_int(value)
    if target is bool:
        return to_bool(value)
    return value


CASTS: Final[dict[Type, Callable[[Value], Value]]] = {str: to_str, int: to_int, bool: to_bool}
