"""CESQL errors: the spec's error kinds as one exception type, plus the internal abort signal.

Why errors are values here: CESQL is total, so evaluation returns a value *and* a list of errors
(cesql/spec.md §3.3); nothing is raised to the caller at evaluation time. Only building a filter
from bad text raises (ParseError), so a Trigger with a broken expression is rejected up front.

    CesqlError (Exception)   one error; `kind` is the TCK spelling of the spec's error kind
     +-- ParseError          the text is not CESQL; says what was expected, where, with a caret

`Abort` is internal: compiled closures raise it to stop at the first error (fail-fast evaluation)
without paying for error bookkeeping on the happy path. It never escapes `compile()`.
"""

from __future__ import annotations

from typing import Final, Literal

Kind = Literal[
    "parse", "math", "cast", "missingAttribute", "missingFunction", "functionEvaluation", "generic"
]
KINDS: Final[tuple[Kind, ...]] = (
    "parse",
    "math",
    "cast",
    "missingAttribute",
    "missingFunction",
    "functionEvaluation",
    "generic",
)
_CONTEXT: Final = 30  # characters shown either side of a parse error in long expressions


class CesqlError(Exception):
    """One CESQL error; `kind` is one of KINDS, `message` says what went wrong."""

    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.message = message

    def __repr__(self) -> str:
        return f"CesqlError({self.kind!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CesqlError):
            return NotImplemented
        return (self.kind, self.message) == (other.kind, other.message)

    def __hash__(self) -> int:
        return hash((self.kind, self.message))


class ParseError(CesqlError):
    """The expression is not valid CESQL: what was expected, at which position, and a caret."""

    def __init__(self, expected: str, position: int, expression: str, found: str = "") -> None:
        self.expected = expected
        self.position = position
        self.expression = expression
        self.found = found
        got = f", found {found}" if found else ""
        super().__init__("parse", f"expected {expected}{got} at position {position}")

    def __str__(self) -> str:
        return f"{self.message}\n{_caret(self.expression, self.position)}"

    def __repr__(self) -> str:
        return f"ParseError({self.expected!r}, {self.position!r}, found={self.found!r})"


def _caret(expression: str, position: int) -> str:
    """The line of the expression holding `position`, windowed, with a caret under it."""
    start = expression.rfind("\n", 0, position) + 1
    end = expression.find("\n", position)
    line = expression[start : len(expression) if end < 0 else end]
    col = position - start
    left = max(0, col - _CONTEXT)
    shown = line[left : col + _CONTEXT]
    prefix = "..." if left > 0 else ""
    suffix = "..." if col + _CONTEXT < len(line) else ""
    # Tabs and other control characters would shift the caret; show them as spaces.
    shown = "".join(" " if ch < " " else ch for ch in shown)
    return f"  {prefix}{shown}{suffix}\n  {' ' * (len(prefix) + col - left)}^"


class Abort(Exception):
    """Internal: stop evaluation at the first error (fail-fast).

    `value` is what the raising node itself evaluates to (a function may return a value with its
    error, e.g. ABS(-2147483648)); `origin` is that node, so the top level knows whether to report
    `value` (the root raised) or the zero value of the root's type (an operand raised).
    """

    __slots__ = ("error", "origin", "value")

    def __init__(
        self, error: CesqlError, value: str | int | bool = False, origin: object = None
    ) -> None:
        self.error = error
        self.value = value
        self.origin = origin
