"""Parser: grouping, literals, strings, error messages with carets, bounds, warnings."""

from __future__ import annotations

import pytest
from kbroker.core.cesql import ParseError, compile, parse, warnings
from kbroker.core.cesql.ast import (
    Arithmetic,
    Attribute,
    Call,
    Comparison,
    Constant,
    Exists,
    Expr,
    In,
    Like,
    Logical,
    Negate,
    Not,
)
from kbroker.core.cesql.interpreter import evaluate
from kbroker.core.cesql.parser import BARE_NOT_WARNING, MIXED_LOGIC_WARNING
from kbroker.core.cesql.printer import to_source

a, b, c = Attribute("a"), Attribute("b"), Attribute("c")

TREES: dict[str, tuple[str, Expr]] = {
    "and/or right to left": ("a AND b OR c", Logical("AND", (a, Logical("OR", (b, c))))),
    "or/and right to left": ("a OR b AND c", Logical("OR", (a, Logical("AND", (b, c))))),
    "same-op chain is flat": ("a AND b AND c", Logical("AND", (a, b, c))),
    "parenthesised chain stays nested": (
        "a AND (b AND c)",
        Logical("AND", (a, Logical("AND", (b, c)))),
    ),
    "mixed run": (
        "a AND b AND c OR a",
        Logical("AND", (a, b, Logical("OR", (c, a)))),
    ),
    "xor": ("a XOR b", Logical("XOR", (a, b))),
    "comparison below logic": (
        "a = 1 AND b",
        Logical("AND", (Comparison("=", a, Constant(1)), b)),
    ),
    "NOT takes one operand": ("NOT a = b", Comparison("=", Not(a), b)),
    "NOT before LIKE": ("NOT a LIKE 'x'", Like(Not(a), "x")),
    "NOT LIKE": ("a NOT LIKE 'x'", Like(a, "x", negated=True)),
    "NOT IN": ("a NOT IN (1)", In(a, (Constant(1),), negated=True)),
    "minus literal": ("-5", Constant(-5)),
    "plus literal": ("+5", Constant(5)),
    "minus attribute": ("-a", Negate(a)),
    "minus spaced literal": ("- 5", Negate(Constant(5))),
    "minus before mul": ("-a * b", Arithmetic("*", Negate(a), b)),
    "binary minus glued": ("a -5", Arithmetic("-", a, Constant(5))),
    "int32 min literal": ("-2147483648", Constant(-2147483648)),
    "leading zeros": ("007", Constant(7)),
    "booleans any case": ("tRuE", Constant(True)),
    "keywords any case": ("a and b", Logical("AND", (a, b))),
    "attribute lower-cased": ("SOURCE", Attribute("source")),
    "attribute with digits": ("ext1", Attribute("ext1")),
    "exists": ("EXISTS Subject", Exists("subject")),
    "function upper-cased": ("lower(a)", Call("LOWER", (a,))),
    "function no args": ("CONCAT()", Call("CONCAT", ())),
    "function space before paren": ("LOWER (a)", Call("LOWER", (a,))),
    "underscore function": ("concat_ws(',', a)", Call("CONCAT_WS", (Constant(","), a))),
    "in with expressions": (
        "a IN (b, 1 + 2)",
        In(a, (b, Arithmetic("+", Constant(1), Constant(2)))),
    ),
    "like binds before IN": ("a LIKE 'x' IN (TRUE)", In(Like(a, "x"), (Constant(True),))),
    "whitespace kinds": ("a\t=\r\n1", Comparison("=", a, Constant(1))),
    "single-quote escape": ("'it\\'s'", Constant("it's")),
    "double-quote escape": ('"say \\"hi\\""', Constant('say "hi"')),
    "other quote needs no escape": ('"it\'s"', Constant("it's")),
    "other backslashes kept": ("'a\\b\\%'", Constant("a\\b\\%")),
    "escaped backslash kept as pair": ("'a\\\\'", Constant("a\\\\")),
    "unicode string": ("'héllo 😀'", Constant("héllo 😀")),
}


@pytest.mark.parametrize(("text", "tree"), TREES.values(), ids=TREES.keys())
def test_tree(text: str, tree: Expr) -> None:
    assert parse(text) == tree


ERRORS: dict[str, tuple[str, str, int]] = {
    # expression, fragment of the "expected ..." text, position
    "unclosed call": ("ABC(", "a function argument", 4),
    "dangling AND": ("a AND", "an expression", 5),
    "like needs string": ("x LIKE 123", "a string literal pattern after LIKE", 7),
    "empty IN": ("x IN ()", "at least one expression in the IN set", 6),
    "IN without parens": ("x IN 1", "'(' opening the set after IN", 5),
    "int overflow": ("2147483648", "an integer within", 0),
    "negative overflow": ("-2147483649", "an integer within", 0),
    "unary minus of overflow": ("- 2147483648", "an integer within", 2),
    "unterminated string": ("'abc", "a closing '", 4),
    "escaped closing quote": ("'abc\\'", "a closing '", 6),
    "bad character": ("a = #", "an operator, a literal, a name or '('", 4),
    "doubled quotes are two strings": ("'it''s'", "an operator or the end", 4),
    "NOT needs LIKE or IN": ("a NOT = b", "LIKE or IN after NOT", 6),
    "keyword as attribute": ("EXISTS in", "an attribute name after EXISTS", 7),
    "underscore attribute": ("my_attr", "an attribute name", 0),
    "digit in function name": ("f1(a)", "a function name", 0),
    "unclosed paren": ("(a = 1", "')'", 6),
    "missing comma": ("x IN (1 2)", "',' or ')'", 8),
    "trailing comma": ("x IN (1,)", "an expression in the IN set", 8),
    "two operands": ("a b", "an operator or the end", 2),
    "empty": ("", "an expression", 0),
    "unary plus": ("+ 5", "an expression", 0),
    "5 -3 style is fine, but 5 --": ("5 --", "an expression", 4),
}


@pytest.mark.parametrize(("text", "expected", "position"), ERRORS.values(), ids=ERRORS.keys())
def test_parse_error(text: str, expected: str, position: int) -> None:
    with pytest.raises(ParseError) as caught:
        parse(text)
    error = caught.value
    assert error.kind == "parse"
    assert expected in error.expected
    assert error.position == position
    lines = str(error).splitlines()
    assert lines[0].startswith(f"expected {error.expected}")
    assert f"at position {position}" in lines[0]
    assert lines[1] == "  " + text.replace("\n", " ")
    assert lines[2] == "  " + " " * position + "^"


def test_caret_in_long_expression_is_windowed() -> None:
    text = "a = 1 AND " * 40 + "b ="
    with pytest.raises(ParseError) as caught:
        parse(text)
    _, shown, caret = str(caught.value).splitlines()
    assert shown.startswith("  ...") and shown.endswith("b =")
    assert len(shown) < 80
    assert caret.rstrip().endswith("^")
    assert len(caret) == len(shown) + 1  # the caret sits just past the end: where input ended


def test_caret_on_the_right_line() -> None:
    with pytest.raises(ParseError) as caught:
        parse("a = 1\nAND b = #")
    _, shown, caret = str(caught.value).splitlines()
    assert shown == "  AND b = #"
    assert caret == "  " + " " * 8 + "^"


@pytest.mark.parametrize(
    "text",
    [
        "(" * 100 + "a" + ")" * 100,
        "NOT " * 100 + "a",
        "- " * 100 + "a",
        "LOWER(" * 100 + "a" + ")" * 100,
        "a IN (" * 100 + "a" + ")" * 100,
        " + ".join(["1"] * 100),
        " AND ".join(["(a OR b)"] * 10) + " OR " + " XOR ".join(["a AND b"] * 60),
    ],
    ids=["parens", "not", "minus", "calls", "in", "long sum", "mixed logic"],
)
def test_too_deep_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError, match="nested at most 64 levels"):
        parse(text)


def test_depth_is_configurable_and_huge_depths_are_safe() -> None:
    assert parse("(" * 80 + "a" + ")" * 80, max_depth=100) == a
    with pytest.raises(ParseError):
        parse("(" * 50_000 + "a" + ")" * 50_000, max_length=200_000, max_depth=100)
    deep = "NOT (" * 49 + "a = b + c * d LIKE 'x' IN (1)" + ")" * 49
    assert isinstance(parse(deep, max_depth=100), Not)
    with pytest.raises(ValueError):
        parse("a", max_depth=101)


@pytest.mark.parametrize(
    "text",
    [
        "LOWER(" * 99 + "type" + ")" * 99,
        "(" * 98 + "num = sn + big * num LIKE 'x' IN (1)" + ")" * 98,
        "- " * 99 + "num",
        " + ".join(["num"] * 99),
    ],
    ids=["calls", "parens", "minus", "sum"],
)
def test_deepest_allowed_tree_runs_through_every_pass(text: str) -> None:
    """At the ceiling, parsing, printing, compiling and both evaluators stay off the stack limit."""
    tree = parse(text, max_depth=100)
    printed = to_source(tree)
    assert parse(printed, max_depth=100, max_length=10_000) == tree
    event: dict[str, str | int | bool] = {"type": "T", "num": 1, "sn": "2", "big": "3"}
    assert compile(tree)(event) == evaluate(tree, event)


def test_long_flat_chains_stay_shallow() -> None:
    text = " OR ".join(f"type = 't{i}'" for i in range(200))
    tree = parse(text)
    assert isinstance(tree, Logical) and len(tree.operands) == 200


def test_length_limit() -> None:
    text = "a = '" + "x" * 5000 + "'"
    with pytest.raises(ParseError, match="at most 4096 characters"):
        parse(text)
    assert parse(text, max_length=6000) == Comparison("=", a, Constant("x" * 5000))


WARNINGS: dict[str, tuple[str, list[str]]] = {
    "none": ("a AND b AND c", []),
    "mixed": ("a AND b OR c", [MIXED_LOGIC_WARNING]),
    "mixed with xor": ("a XOR b AND c", [MIXED_LOGIC_WARNING]),
    "parenthesised is fine": ("a AND (b OR c)", []),
    "nested mix still warns": ("(a AND b OR c) AND d", [MIXED_LOGIC_WARNING]),
    "bare NOT compare": ("NOT a = b", [BARE_NOT_WARNING]),
    "bare NOT like": ("NOT a LIKE 'x'", [BARE_NOT_WARNING]),
    "bare NOT in": ("NOT a IN (1)", [BARE_NOT_WARNING]),
    "NOT parenthesised": ("NOT (a = b)", []),
    "explicit (NOT a) = b": ("(NOT a) = b", []),
    "NOT alone": ("NOT a AND b", []),
    "unknown function": (
        "FOO(1) OR LOWER(a, b)",
        [
            "unknown function FOO with 1 argument(s): always false with a missingFunction error",
            "unknown function LOWER with 2 argument(s): always false with a missingFunction error",
        ],
    ),
}


@pytest.mark.parametrize(("text", "expected"), WARNINGS.values(), ids=WARNINGS.keys())
def test_warnings(text: str, expected: list[str]) -> None:
    assert warnings(text) == expected


def test_warnings_of_invalid_text_raise() -> None:
    with pytest.raises(ParseError):
        warnings("a AND")
