"""Warnings about CESQL that is valid but likely not what its author meant.

Why: Knative parity forces a few surprising readings (AND/OR/XOR share one right-associative
level; prefix NOT takes one operand), and an unknown function is only an error at evaluation
time. The CLI and Trigger status show these so users find out before events are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

from kbroker.core.cesql import ast, functions
from kbroker.core.cesql.parser import parse_with_warnings


def warnings(expression: str) -> list[str]:
    """Warnings for `expression`; raises ParseError when it is not valid CESQL."""
    expr, found = parse_with_warnings(expression)
    for node in walk(expr):
        if isinstance(node, ast.Call) and functions.resolve(node.name, len(node.args)) is None:
            found.append(
                f"unknown function {node.name} with {len(node.args)} argument(s): "
                "always false with a missingFunction error"
            )
    return found


def walk(expr: ast.Expr) -> Iterator[ast.Expr]:
    """Every node of the tree, parents first (iterative: no recursion on the tree)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


def children(node: ast.Expr) -> tuple[ast.Expr, ...]:
    if isinstance(node, ast.Not | ast.Negate | ast.Like):
        return (node.operand,)
    if isinstance(node, ast.Arithmetic | ast.Comparison):
        return (node.left, node.right)
    if isinstance(node, ast.Logical):
        return node.operands
    if isinstance(node, ast.In):
        return (node.operand, *node.items)
    if isinstance(node, ast.Call):
        return node.args
    return ()
