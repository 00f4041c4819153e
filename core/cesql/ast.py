"""The typed CESQL syntax tree: frozen, comparable values produced by the parser.

Why a tree of our own rather than the grammar's parse tree: the compiler, the printer and the
reference interpreter all consume this one small shape, and equality of trees is what the
print/parse round-trip property checks. Parentheses leave no node behind; grouping is the tree.

Chains of one logical operator (`a AND b AND c`) are one n-ary `Logical` node: with AND/OR/XOR
right-associative and short-circuiting left to right, the chain means the same as the nested
form, and keeping it flat keeps long filters shallow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Value = str | int | bool
ArithOp = Literal["+", "-", "*", "/", "%"]
CompareOp = Literal["=", "!=", "<>", "<", "<=", ">", ">="]
LogicOp = Literal["AND", "OR", "XOR"]


@dataclass(frozen=True, slots=True)
class Constant:
    """A string, integer (int32) or boolean literal."""

    value: Value


@dataclass(frozen=True, slots=True)
class Attribute:
    """A context attribute or extension, by its lower-cased name."""

    name: str


@dataclass(frozen=True, slots=True)
class Exists:
    """`EXISTS name`: true when the event carries the attribute; never an error."""

    name: str


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Negate:
    """Unary minus (a negative integer literal is a `Constant`, not this)."""

    operand: Expr


@dataclass(frozen=True, slots=True)
class Arithmetic:
    op: ArithOp
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Comparison:
    op: CompareOp
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Logical:
    """An unparenthesised chain of one logical operator; two or more operands."""

    op: LogicOp
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Like:
    """`operand [NOT] LIKE 'pattern'`; the pattern is always a string literal."""

    operand: Expr
    pattern: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class In:
    """`operand [NOT] IN (items...)`; one or more items, each any expression."""

    operand: Expr
    items: tuple[Expr, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """A function invocation; `name` is upper-cased (function names are case-insensitive)."""

    name: str
    args: tuple[Expr, ...]


Expr = (
    Constant
    | Attribute
    | Exists
    | Not
    | Negate
    | Arithmetic
    | Comparison
    | Logical
    | Like
    | In
    | Call
)
