"""CloudEvents SQL (CESQL) v1: parse once, compile to closures, evaluate per event.

    parse(text) -> Expr                  typed tree; ParseError on bad or oversized input
    compile(text | Expr) -> evaluator    attributes -> (value, [CesqlError]) as the spec defines
    compile_filter(text) -> predicate    attributes -> bool: Boolean true and no error
    warnings(text) -> [str]              legal but probably-not-meant constructs

Semantics and the decisions beyond the spec are in docs/cesql.md.
"""

from __future__ import annotations

from kbroker.core.cesql.ast import Expr
from kbroker.core.cesql.compiler import compile, compile_filter
from kbroker.core.cesql.errors import CesqlError, ParseError
from kbroker.core.cesql.lint import warnings
from kbroker.core.cesql.parser import parse

__all__ = ["CesqlError", "Expr", "ParseError", "compile", "compile_filter", "parse", "warnings"]
