"""A deliberately plain tree-walking CESQL evaluator: the reference the compiler is tested against.

Why keep a second evaluator: the compiler specialises, folds constants, unrolls chains and unwinds
errors with an exception; property tests check that none of that changes an answer, by comparing
it with this direct reading of the semantics on generated expressions and events. Here every node
returns its own (value, error) and an operator whose operand failed returns its zero value, which
is the spec's fail-fast rule written out. It shares only the casts and the function bodies with
the compiler. Not for production use: it walks the tree per event.
"""

from __future__ import annotations

from collections.abc import Mapping

from kbroker.core.cesql import ast, casts, functions, operators
from kbroker.core.cesql.casts import Type, Value
from kbroker.core.cesql.errors import Abort, CesqlError

Result = tuple[Value, CesqlError | None]


def evaluate(expr: ast.Expr, attributes: Mapping[str, Value]) -> tuple[Value, list[CesqlError]]:
    value, error = _eval(expr, attributes)
    return value, [] if error is None else [error]


def static_type(expr: ast.Expr) -> Type:
    if isinstance(expr, ast.Constant):
        return expr.value.__class__
    if isinstance(expr, ast.Negate | ast.Arithmetic):
        return int
    if isinstance(expr, ast.Call):
        function = functions.resolve(expr.name, len(expr.args))
        return None if function is None else function.returns
    if isinstance(expr, ast.Attribute):
        return None
    return bool


def _cast(value: Value, target: Type) -> Result:
    try:
        return casts.cast(value, target), None
    except Abort as abort:
        return abort.value, abort.error


def _eval(expr: ast.Expr, attrs: Mapping[str, Value]) -> Result:
    zero = casts.zero(static_type(expr))
    if isinstance(expr, ast.Constant):
        return expr.value, None
    if isinstance(expr, ast.Attribute):
        if attrs.get(expr.name) is None:
            return False, CesqlError("missingAttribute", f"{expr.name} missing")
        return attrs[expr.name], None
    if isinstance(expr, ast.Exists):
        return attrs.get(expr.name) is not None, None
    if isinstance(expr, ast.Not | ast.Negate):
        value, error = _eval(expr.operand, attrs)
        if error is None:
            value, error = _cast(value, bool if isinstance(expr, ast.Not) else int)
        if error is not None:
            return zero, error
        if isinstance(expr, ast.Not):
            return not value, None
        return casts.wrap32(-int(value)), None
    if isinstance(expr, ast.Logical):
        return _logical(expr, attrs)
    if isinstance(expr, ast.Arithmetic | ast.Comparison):
        return _binary(expr, attrs)
    if isinstance(expr, ast.Like):
        value, error = _eval(expr.operand, attrs)
        if error is None:
            value, error = _cast(value, str)
        if error is not None:
            return zero, error
        return _like(str(value), expr.pattern) is not expr.negated, None
    if isinstance(expr, ast.In):
        return _in(expr, attrs)
    return _call(expr, attrs)


def _logical(expr: ast.Logical, attrs: Mapping[str, Value]) -> Result:
    # Right-associative nesting, evaluated literally: op(first, op(second, ...)).
    first, rest = expr.operands[0], expr.operands[1:]
    value, error = _eval(first, attrs)
    if error is None:
        value, error = _cast(value, bool)
    if error is not None:
        return False, error
    if expr.op == "AND" and value is False:
        return False, None
    if expr.op == "OR" and value is True:
        return True, None
    tail: ast.Expr = rest[0] if len(rest) == 1 else ast.Logical(expr.op, rest)
    other, error = _eval(tail, attrs)
    if error is None:
        other, error = _cast(other, bool)
    if error is not None:
        return False, error
    if expr.op == "XOR":
        return value != other, None
    return bool(other), None


def _binary(expr: ast.Arithmetic | ast.Comparison, attrs: Mapping[str, Value]) -> Result:
    zero = casts.zero(static_type(expr))
    if expr.op in ("=", "!=", "<>"):
        # Both sides first: the left is cast to the type the right turns out to have.
        left, error = _eval(expr.left, attrs)
        if error is None:
            right, error = _eval(expr.right, attrs)
        if error is None:
            left, error = _cast(left, right.__class__)
        if error is not None:
            return zero, error
        return operators.COMPARISON[expr.op](left, right), None
    left, error = _eval_as(expr.left, int, attrs)
    if error is None:
        right, error = _eval_as(expr.right, int, attrs)
    if error is not None:
        return zero, error
    x, y = int(left), int(right)
    if isinstance(expr, ast.Comparison):
        return operators.COMPARISON[expr.op](x, y), None
    if expr.op in ("/", "%") and y == 0:
        return 0, CesqlError("math", "division by zero")
    if expr.op == "+":
        return casts.wrap32(x + y), None
    if expr.op == "-":
        return casts.wrap32(x - y), None
    if expr.op == "*":
        return casts.wrap32(x * y), None
    quotient = abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)
    if expr.op == "/":
        return casts.wrap32(quotient), None
    return x - y * quotient, None


def _eval_as(expr: ast.Expr, target: Type, attrs: Mapping[str, Value]) -> Result:
    """Evaluate an operand and cast it at once (every operator but `=`, `!=`, `<>` does)."""
    value, error = _eval(expr, attrs)
    if error is not None:
        return value, error
    return _cast(value, target)


def _in(expr: ast.In, attrs: Mapping[str, Value]) -> Result:
    left, error = _eval(expr.operand, attrs)
    if error is not None:
        return False, error
    for item in expr.items:
        value, error = _eval(item, attrs)
        if error is None:
            value, error = _cast(value, left.__class__)
        if error is not None:
            return False, error
        if value == left:
            return not expr.negated, None
    return expr.negated, None


def _call(expr: ast.Call, attrs: Mapping[str, Value]) -> Result:
    function = functions.resolve(expr.name, len(expr.args))
    if function is None:
        return False, CesqlError("missingFunction", expr.name)
    zero = casts.zero(function.returns)
    cast_values = []
    for arg, target in zip(expr.args, functions.param_types(function, len(expr.args)), strict=True):
        value, error = _eval_as(arg, target, attrs)
        if error is not None:
            return zero, error
        cast_values.append(value)
    try:
        return function.impl(*cast_values), None
    except Abort as abort:
        return abort.value, abort.error


def _like(value: str, pattern: str) -> bool:
    """Match by dynamic programming over (pattern token, value position); no shortcuts."""
    tokens: list[str] = []  # "%", "_" or "=c" for a literal character c
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            tokens.append("=" + pattern[i + 1])
            i += 2
            continue
        tokens.append(pattern[i] if pattern[i] in "%_" else "=" + pattern[i])
        i += 1
    reachable = {0}  # value positions reachable after the tokens consumed so far
    for token in tokens:
        if token == "%":
            reachable = set(range(min(reachable), len(value) + 1)) if reachable else set()
        elif token == "_":
            reachable = {p + 1 for p in reachable if p < len(value)}
        else:
            reachable = {p + 1 for p in reachable if p < len(value) and value[p] == token[1]}
    return len(value) in reachable
