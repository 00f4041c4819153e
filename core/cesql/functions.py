"""CESQL's built-in functions and their dispatch table (cesql/spec.md §3.5).

Why a table: a call is resolved once, at compile time, by upper-cased name and argument count,
so evaluation never looks a name up. A function receives arguments already cast to its
parameter types; when it fails it raises `Abort` carrying the value the spec says it returns with
its error (e.g. LEFT('abc', -2) is 'abc' plus a functionEvaluation error).

Strings are sequences of Unicode code points: LENGTH, LEFT, RIGHT and SUBSTRING count characters,
not UTF-8 bytes (the Go SDK counts bytes; we follow the spec). IS_INT and IS_BOOL are not in the
spec but exist in the Go SDK Knative uses, so Knative triggers using them keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from kbroker.core.cesql import casts
from kbroker.core.cesql.casts import INT32_MAX, INT32_MIN, Type, Value
from kbroker.core.cesql.errors import Abort, CesqlError

# Unicode White_Space minus control characters (Go's unicode.IsSpace): Python's str.strip()
# would also strip U+001C..U+001F, which are controls.
_SPACES: Final = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    params: tuple[Type, ...]  # None: any type, passed uncast
    variadic: Type | None  # type of the repeated trailing parameter, or None when fixed
    returns: Type
    impl: Callable[..., Value]
    may_fail: bool = False  # raises Abort itself (not only through casts of its arguments)
    is_variadic: bool = False


def _evaluation_error(message: str, value: Value) -> Abort:
    return Abort(CesqlError("functionEvaluation", message), value)


def _left(text: str, count: int) -> str:
    if count < 0:
        raise _evaluation_error(f"LEFT: negative length {count}", text)
    return text[:count]


def _right(text: str, count: int) -> str:
    if count < 0:
        raise _evaluation_error(f"RIGHT: negative length {count}", text)
    return text[len(text) - count :] if count < len(text) else text


def _start(text: str, pos: int) -> int:
    """0-based start of SUBSTRING's 1-based (or from-the-end negative) `pos`; -1 for pos 0."""
    if pos > len(text) or pos < -len(text):
        raise _evaluation_error(f"SUBSTRING: position {pos} outside a {len(text)}-char string", "")
    if pos == 0:
        return -1
    return pos - 1 if pos > 0 else len(text) + pos


def _substring(text: str, pos: int) -> str:
    start = _start(text, pos)
    return "" if start < 0 else text[start:]


def _substring_len(text: str, pos: int, length: int) -> str:
    if length < 0:
        raise _evaluation_error(f"SUBSTRING: negative length {length}", "")
    start = _start(text, pos)
    return "" if start < 0 else text[start : start + length]


def _abs(number: int) -> int:
    if number == INT32_MIN:
        raise Abort(CesqlError("math", "ABS(-2147483648) overflows Integer"), INT32_MAX)
    return abs(number)


def _is_int(value: Value) -> bool:
    try:
        casts.to_int(value)
    except Abort:
        return False
    return True


def _is_bool(value: Value) -> bool:
    try:
        casts.to_bool(value)
    except Abort:
        return False
    return True


def _concat(*parts: str) -> str:
    return "".join(parts)


def _concat_ws(separator: str, *parts: str) -> str:
    return separator.join(parts)


def _fixed(
    name: str,
    params: tuple[Type, ...],
    returns: Type,
    impl: Callable[..., Value],
    may_fail: bool = False,
) -> Function:
    return Function(name, params, None, returns, impl, may_fail)


BUILTINS: Final[tuple[Function, ...]] = (
    _fixed("LENGTH", (str,), int, len),
    Function("CONCAT", (), str, str, _concat, is_variadic=True),
    Function("CONCAT_WS", (str,), str, str, _concat_ws, is_variadic=True),
    _fixed("LOWER", (str,), str, str.lower),
    _fixed("UPPER", (str,), str, str.upper),
    _fixed("TRIM", (str,), str, lambda text: text.strip(_SPACES)),
    _fixed("LEFT", (str, int), str, _left, may_fail=True),
    _fixed("RIGHT", (str, int), str, _right, may_fail=True),
    _fixed("SUBSTRING", (str, int), str, _substring, may_fail=True),
    _fixed("SUBSTRING", (str, int, int), str, _substring_len, may_fail=True),
    _fixed("ABS", (int,), int, _abs, may_fail=True),
    _fixed("INT", (None,), int, casts.to_int),
    _fixed("BOOL", (None,), bool, casts.to_bool),
    _fixed("STRING", (None,), str, casts.to_str),
    _fixed("IS_INT", (None,), bool, _is_int),
    _fixed("IS_BOOL", (None,), bool, _is_bool),
)


def resolve(name: str, arity: int, table: tuple[Function, ...] = BUILTINS) -> Function | None:
    """The function `name` taking `arity` arguments: an exact fixed arity wins over a variadic."""
    variadic = None
    for function in table:
        if function.name != name:
            continue
        if not function.is_variadic and len(function.params) == arity:
            return function
        if function.is_variadic and arity >= len(function.params):
            variadic = function
    return variadic


def param_types(function: Function, arity: int) -> tuple[Type, ...]:
    """The parameter type for each of `arity` arguments (variadic tail expanded)."""
    return function.params + (function.variadic,) * (arity - len(function.params))
