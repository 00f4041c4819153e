"""CESQL tree -> text that parses back to the same tree.

Why: error messages, the CLI and Trigger status show expressions in one canonical form, and the
round-trip property (parse, print, parse gives the same tree) pins the parser's grouping down.
Parentheses appear only where the parser's precedence would otherwise group differently.

String values are written back in whichever quote can represent them: the lexer keeps a
backslash pair verbatim unless it escapes the delimiter, so a value containing backslash-quote
needs the other quote. A value that neither quote can hold (one ending in a lone backslash)
cannot come out of the parser; printing one raises ValueError.
"""

from __future__ import annotations

from kbroker.core.cesql import ast

_ATOM, _NOT, _NEGATE, _LIKE, _IN, _MUL, _ADD, _COMPARE, _LOGIC = 10, 9, 8, 7, 5, 4, 3, 2, 1


def to_source(expr: ast.Expr) -> str:
    """Canonical text for `expr`: keywords upper-case, parentheses only where grouping needs."""
    return _text(expr)[0]


def _text(expr: ast.Expr) -> tuple[str, int]:
    """(text, binding level of its outermost operator) -- the parser's levels."""
    if isinstance(expr, ast.Constant):
        value = expr.value
        if value.__class__ is bool:
            return ("TRUE" if value else "FALSE"), _ATOM
        return (quote(value) if isinstance(value, str) else str(value)), _ATOM
    if isinstance(expr, ast.Attribute):
        return expr.name, _ATOM
    if isinstance(expr, ast.Exists):
        return f"EXISTS {expr.name}", _ATOM
    if isinstance(expr, ast.Call):
        return f"{expr.name}({', '.join(to_source(a) for a in expr.args)})", _ATOM
    if isinstance(expr, ast.Not):
        return f"NOT {_at(expr.operand, _NEGATE)}", _NOT
    if isinstance(expr, ast.Negate):
        return f"- {_at(expr.operand, _NEGATE)}", _NEGATE  # `- 5`, not the literal `-5`
    if isinstance(expr, ast.Like):
        not_ = "NOT " if expr.negated else ""
        return f"{_at(expr.operand, _LIKE)} {not_}LIKE {quote(expr.pattern)}", _LIKE
    if isinstance(expr, ast.In):
        not_ = "NOT " if expr.negated else ""
        items = ", ".join(to_source(i) for i in expr.items)
        return f"{_at(expr.operand, _IN)} {not_}IN ({items})", _IN
    if isinstance(expr, ast.Logical):
        # Any logical operand needs parentheses, or it would merge into this chain.
        return f" {expr.op} ".join(_at(o, _COMPARE) for o in expr.operands), _LOGIC
    level = _COMPARE if isinstance(expr, ast.Comparison) else _ADD if expr.op in "+-" else _MUL
    return f"{_at(expr.left, level)} {expr.op} {_at(expr.right, level + 1)}", level


def _at(expr: ast.Expr, minimum: int) -> str:
    """`expr` as an operand that the parser reads at `minimum` level or above."""
    text, level = _text(expr)
    return text if level >= minimum else f"({text})"


def quote(value: str) -> str:
    for delimiter in ("'", '"'):
        text = _quoted(value, delimiter)
        if text is not None:
            return text
    raise ValueError(f"no CESQL string literal has the value {value!r}")


def _quoted(value: str, delimiter: str) -> str | None:
    out = [delimiter]
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 >= len(value) or value[i + 1] == delimiter:
                return None  # the lexer would read this backslash as escaping the delimiter
            out.append(value[i : i + 2])
            i += 2
            continue
        out.append("\\" + ch if ch == delimiter else ch)
        i += 1
    out.append(delimiter)
    return "".join(out)
