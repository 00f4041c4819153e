"""The CESQL compiler: a tree becomes nested Python closures, built once per filter.

Why closures: a Trigger's filter runs for every event of its broker, so evaluation must not walk
the tree or dispatch on node kinds or function names. Every decision that can be made from the
text is made here: operator and function resolution, which casts are needed (from the static
types of operands), LIKE pattern compilation, IN sets, and constant folding.

Errors are fail-fast (the spec's recommended mode for filtering): the first error raises `Abort`,
which unwinds straight to the top, where it becomes the spec's value-plus-errors result. So the
happy path allocates no error list and runs no checks for errors. The value reported is the
raising node's own value when the root raised (ABS(-2147483648) is 2147483647 with a math error)
and otherwise the zero value of the root's type, as if each operator on the way up had returned
its zero value.

Shapes that dominate real Trigger filters (`attr = 'literal'`, `attr LIKE 'prefix%'`,
`attr IN ('a', 'b')`, `EXISTS attr` and AND-chains of them) also get a *predicate*: a closure that
answers "Boolean true with no error" directly, used by `compile_filter` without any try block.

Semantics beyond the spec, decided in docs/cesql.md: operands are evaluated left to right and
each is cast as soon as it is evaluated, except that `=`, `!=` and `<>` evaluate both sides
before casting the left one to the right one's type; `+ - *` and unary minus wrap around int32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from kbroker.core.cesql import ast, casts, operators, selections
from kbroker.core.cesql.casts import Value
from kbroker.core.cesql.errors import Abort, CesqlError
from kbroker.core.cesql.nodes import Attributes, Builder, Node, Pred
from kbroker.core.cesql.parser import parse

Evaluator = Callable[[Attributes], tuple[Value, list[CesqlError]]]
_EMPTY: Final[Mapping[str, Value]] = {}
_BUILDERS: Final[dict[type, Callable[[ast.Expr, Builder], Node]]] = {
    **operators.BUILDERS,
    **selections.BUILDERS,
}


def compile(expression: str | ast.Expr) -> Evaluator:
    """An evaluator returning the spec's (value, errors) for an event's attributes."""
    expr = parse(expression) if isinstance(expression, str) else expression
    node = build(expr)
    fn, zero = node.fn, casts.zero(node.type)

    def evaluate(attributes: Attributes) -> tuple[Value, list[CesqlError]]:
        try:
            return fn(attributes), []
        except Abort as abort:
            return (abort.value if abort.origin is expr else zero), [abort.error]

    return evaluate


def compile_filter(expression: str) -> Pred:
    """A predicate: True only when the result is Boolean true with no error (ParseError now)."""
    node = build(parse(expression))
    if node.pred is not None:
        return node.pred
    fn = node.fn

    def match(attributes: Attributes) -> bool:
        try:
            return fn(attributes) is True
        except Abort:
            return False

    return match


def build(expr: ast.Expr) -> Node:
    node = _BUILDERS[type(expr)](expr, build)
    return _fold(node) if node.const and node.constant is None else node


def _fold(node: Node) -> Node:
    """Evaluate a constant subexpression once; keep its error, if any, for evaluation time."""
    try:
        value = node.fn(_EMPTY)
    except Abort as abort:
        error, value_, origin = abort.error, abort.value, abort.origin

        def fail(attributes: Attributes) -> Value:
            raise Abort(error, value_, origin)

        return Node(fail, node.type, const=True, pred=_never)
    answer = value is True
    return Node(
        lambda attributes: value,
        node.type,
        const=True,
        pred=(lambda attributes: answer),
        constant=(value,),
    )


def _never(attributes: Attributes) -> bool:
    return False
