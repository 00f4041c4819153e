"""Table-driven evaluation cases beyond the TCK: casts, integers, LIKE, IN, functions, errors.

Each row is (expression, event, expected value, expected error kinds). Every row is checked
through the compiler, the reference interpreter, and `compile_filter`, so the three can never
drift apart on these cases.
"""

from __future__ import annotations

import pytest
from kbroker.core.cesql import compile, compile_filter, parse
from kbroker.core.cesql.casts import Value
from kbroker.core.cesql.interpreter import evaluate

EVENT: dict[str, Value] = {
    "specversion": "1.0",
    "id": "1",
    "source": "/src",
    "type": "com.example.a",
    "sn": "5",  # a number as binary mode delivers it
    "big": "10",
    "num": 7,  # structured mode keeps JSON integers
    "flag": True,
    "yes": "TRUE",
    "word": "héllo wörld",
    "emoji": "😀ab",
}

Row = tuple[str, Value, list[str]]
CASES: dict[str, Row] = {
    # precedence and grouping
    "mul before add": ("1 + 2 * 3", 7, []),
    "left-assoc minus": ("10 - 3 - 2", 5, []),
    "left-assoc div": ("100 / 10 / 5", 2, []),
    "compare after add": ("1 + 1 = 2", True, []),
    "logic right-assoc AND/OR": ("FALSE AND FALSE OR TRUE", False, []),
    "logic right-assoc OR/AND": ("TRUE OR FALSE AND FALSE", True, []),
    "parens override": ("(FALSE AND FALSE) OR TRUE", True, []),
    "XOR chain": ("TRUE XOR TRUE XOR TRUE", True, []),
    "NOT binds tight": ("NOT TRUE = FALSE", True, []),
    "NOT of comparison": ("NOT (1 = 2)", True, []),
    "minus binds before LIKE": ("-5 LIKE '-5'", True, []),
    "LIKE binds before +": ("1 + 2 LIKE '2'", 2, []),
    "IN binds before *": ("2 * 3 IN (3)", 2, []),
    "glued sign is a literal": ("4 + -1", 3, []),
    "5-3 is subtraction": ("5-3", 2, []),
    "double negate": ("- -5", 5, []),
    "comparison chain": ("1 < 2 = TRUE", True, []),
    # every cast direction
    "int to string": ("STRING(-42)", "-42", []),
    "bool to string": ("STRING(FALSE)", "false", []),
    "string to int": ("INT('+0012')", 12, []),
    "string to int: spaces": ("INT(' 12')", 0, ["cast"]),
    "string to int: underscore": ("INT('1_000')", 0, ["cast"]),
    "string to int: arabic digits": ("INT('١٢')", 0, ["cast"]),
    "string to int: overflow": ("INT('2147483648')", 0, ["cast"]),
    "string to int: min": ("INT('-2147483648')", -2147483648, []),
    "string to int: huge": ("INT('" + "9" * 3000 + "')", 0, ["cast"]),
    "bool to int": ("INT(TRUE) + INT(FALSE)", 1, []),
    "int to bool": ("BOOL(-1) AND NOT BOOL(0)", True, []),
    "string to bool": ("BOOL('FaLsE')", False, []),
    "string to bool: bad": ("BOOL('yes')", False, ["cast"]),
    "implicit left-to-right-type": ("sn = 5", True, []),
    "implicit to string": ("num = '7'", True, []),
    "implicit bool": ("yes = TRUE", True, []),
    "right decides type": ("TRUE = 'TRUE'", False, []),
    "attribute to attribute": ("big = sn", False, []),
    "ordering casts to int": ("sn < big", True, []),
    "string ordering is a cast error": ("'a' < 'b'", False, ["cast"]),
    "arithmetic on strings": ("sn * big", 50, []),
    "arithmetic cast error": ("type + 1", 0, ["cast"]),
    "bool arithmetic": ("TRUE + TRUE", 2, []),
    "NOT of string": ("NOT 'true'", False, []),
    "NOT of bad string": ("NOT 'maybe'", False, ["cast"]),
    "AND of int": ("1 AND 2", True, []),
    # division and modulo: truncated, C-style
    "div truncates up": ("-7 / 2", -3, []),
    "div truncates down": ("7 / -2", -3, []),
    "div both negative": ("-7 / -2", 3, []),
    "mod sign of dividend": ("-7 % 2", -1, []),
    "mod positive dividend": ("7 % -2", 1, []),
    "mod zero": ("0 % 5", 0, []),
    "div by zero": ("1 / 0", 0, ["math"]),
    "mod by zero": ("-1 % 0", 0, ["math"]),
    "div overflow wraps": ("-2147483648 / -1", -2147483648, []),
    "mod overflow": ("-2147483648 % -1", 0, []),
    # int32 wrap
    "add wraps": ("2147483647 + 1", -2147483648, []),
    "sub wraps": ("-2147483648 - 1", 2147483647, []),
    "mul wraps": ("65536 * 65536", 0, []),
    "negate min stays": ("- -2147483648", -2147483648, []),
    "abs min": ("ABS(-2147483648)", 2147483647, ["math"]),
    "abs min nested": ("ABS(-2147483648) + 0", 0, ["math"]),
    # LIKE
    "like escape percent": ("'100%' LIKE '100\\%'", True, []),
    "like escaped percent is not wildcard": ("'1000' LIKE '100\\%'", False, []),
    "like escaped underscore": ("'a_b' LIKE 'a\\_b'", True, []),
    "like lone backslash": ("'a\\b' LIKE 'a\\b'", True, []),
    "like backslash then wildcard": ("'a\\xyz' LIKE 'a\\%'", False, []),
    "like unicode underscore": ("word LIKE 'h_llo w_rld'", True, []),
    "like emoji is one char": ("emoji LIKE '_ab'", True, []),
    "like case-sensitive": ("'ABC' LIKE 'abc'", False, []),
    "like newline in value": ("'a\nb' LIKE 'a_b'", True, []),
    "like percent matches empty": ("'ab' LIKE 'a%b'", True, []),
    "like many percents": ("'aXbYc' LIKE '%a%b%c%'", True, []),
    "like needs whole value": ("'abcd' LIKE 'abc'", False, []),
    "like on int": ("num LIKE '7'", True, []),
    "not like missing": ("missing NOT LIKE 'x'", False, ["missingAttribute"]),
    "like prefix suffix overlap": ("'ab' LIKE 'ab%ab'", False, []),
    # LENGTH and friends count characters
    "length of unicode": ("LENGTH(word)", 11, []),
    "length of emoji": ("LENGTH(emoji)", 3, []),
    "left unicode": ("LEFT(word, 2)", "hé", []),
    "right emoji": ("RIGHT(emoji, 3)", "😀ab", []),
    "right zero": ("RIGHT('abc', 0)", "", []),
    "substring negative": ("SUBSTRING(word, -5)", "wörld", []),
    "substring pos=len": ("SUBSTRING('abc', 3)", "c", []),
    "substring pos=-len": ("SUBSTRING('abc', -3)", "abc", []),
    "substring len clipped": ("SUBSTRING('abc', 2, 100)", "bc", []),
    "substring negative len": ("SUBSTRING('abc', 1, -1)", "", ["functionEvaluation"]),
    "upper unicode": ("UPPER('straße')", "STRASSE", []),
    "trim unicode spaces": ("TRIM('\u00a0\u3000x\u2003')", "x", []),
    "trim keeps controls": ("LENGTH(TRIM('\x1fx'))", 2, []),
    "concat casts": ("CONCAT(1, TRUE, 'x')", "1truex", []),
    "concat_ws": ("CONCAT_WS('-', 'a', 2)", "a-2", []),
    "function names case-insensitive": ("lower('ABC')", "abc", []),
    "is_int": ("IS_INT('12') AND NOT IS_INT('x')", True, []),
    "is_bool": ("IS_BOOL('TRUE') AND NOT IS_BOOL(3)", False, []),
    "unknown function": ("NOPE(1)", False, ["missingFunction"]),
    "wrong arity": ("LOWER('a', 'b')", False, ["missingFunction"]),
    "unknown function nested": ("LENGTH(NOPE())", 0, ["missingFunction"]),
    "function error nested": ("LENGTH(LEFT('abc', -1))", 0, ["functionEvaluation"]),
    "function value with error at root": ("RIGHT('abc', -1)", "abc", ["functionEvaluation"]),
    "arg error is not the function's": ("LEFT('abc', 1 / 0)", "", ["math"]),
    # IN with mixed types
    "in int left casts items": ("1 IN ('1', 'x')", True, []),
    "in int left cast error first": ("1 IN ('x', '1')", False, ["cast"]),
    "in string left": ("'1' IN (1, 2)", True, []),
    "in bool left": ("TRUE IN ('x', 'true')", False, ["cast"]),
    "in bool left match first": ("TRUE IN ('true', 'x')", True, []),
    "in attribute items": ("sn IN (big, 5)", True, []),
    "in attribute items cast": ("num IN (sn, '7')", True, []),
    "in missing item": ("1 IN (missing, 1)", False, ["missingAttribute"]),
    "in match before missing item": ("1 IN (1, missing)", True, []),
    "not in": ("type NOT IN ('x', 'y')", True, []),
    "not in missing": ("missing NOT IN ('x')", False, ["missingAttribute"]),
    "in expression items": ("3 IN (1 + 2)", True, []),
    "in int attr": ("num IN (7)", True, []),
    "in bool attr": ("flag IN ('TRUE')", True, []),
    # errors and short-circuit
    "and short-circuits error": ("FALSE AND missing", False, []),
    "or short-circuits error": ("TRUE OR 1 / 0 = 1", True, []),
    "and evaluates right": ("TRUE AND missing", False, ["missingAttribute"]),
    "or evaluates right": ("FALSE OR NOPE()", False, ["missingFunction"]),
    "xor evaluates both": ("TRUE XOR missing", False, ["missingAttribute"]),
    "short-circuit chain": ("TRUE AND FALSE AND 1 / 0 = 0", False, []),
    "first error wins": ("missing + 1 / 0", 0, ["missingAttribute"]),
    "each operand cast when evaluated": ("'x' + missing", 0, ["cast"]),
    "equality evaluates both first": ("'x' = (missing + 1)", False, ["missingAttribute"]),
    "error not negated": ("NOT missing", False, ["missingAttribute"]),
    "not equal missing": ("missing != 'x'", False, ["missingAttribute"]),
    "exists never errors": ("EXISTS missing", False, []),
    "exists upper-case": ("EXISTS TYPE", True, []),
    "bare attribute": ("num", 7, []),
    "bare missing": ("missing", False, ["missingAttribute"]),
    "upper-case attribute": ("TYPE", "com.example.a", []),
}


@pytest.mark.parametrize(("expression", "value", "errors"), CASES.values(), ids=CASES.keys())
def test_evaluation(expression: str, value: Value, errors: list[str]) -> None:
    got, got_errors = compile(expression)(EVENT)
    assert (got, [e.kind for e in got_errors]) == (value, errors)
    assert got.__class__ is value.__class__
    ref, ref_errors = evaluate(parse(expression), EVENT)
    assert (ref, [e.kind for e in ref_errors]) == (value, errors)
    assert compile_filter(expression)(EVENT) is (value is True and not errors)


FILTERS: dict[str, tuple[str, Value | None, bool]] = {
    # expression, value of attribute `x` (None: absent), matches
    "eq str": ("x = 'a'", "a", True),
    "eq str no": ("x = 'a'", "b", False),
    "eq str missing": ("x = 'a'", None, False),
    "eq int attr vs str literal": ("x = '7'", 7, True),
    "eq bool attr vs str literal": ("x = 'true'", True, True),
    "ne missing never matches": ("x != 'a'", None, False),
    "ne": ("x != 'a'", "b", True),
    "ne int attr": ("x <> '7'", 7, False),
    "eq int literal bad cast": ("x = 7", "seven", False),
    "eq int literal": ("x = 7", "7", True),
    "like prefix": ("x LIKE 'ab%'", "abc", True),
    "like prefix missing": ("x LIKE 'ab%'", None, False),
    "like int attr": ("x LIKE '1_'", 12, True),
    "not like": ("x NOT LIKE 'ab%'", "b", True),
    "not like missing": ("x NOT LIKE 'ab%'", None, False),
    "in": ("x IN ('a', 'b')", "b", True),
    "in int attr": ("x IN ('7', 'b')", 7, True),
    "in bool attr cast error": ("x IN ('x', 'true')", True, False),
    "in bool attr": ("x IN ('true', 'x')", True, True),
    "in missing": ("x IN ('a')", None, False),
    "not in missing": ("x NOT IN ('a')", None, False),
    "exists": ("EXISTS x", "", True),
    "exists absent": ("EXISTS x", None, False),
    "and chain": ("EXISTS x AND x = 'a' AND x LIKE 'a'", "a", True),
    "and chain one false": ("EXISTS x AND x = 'a' AND x LIKE 'b'", "a", False),
    "non-boolean result": ("x", "a", False),
    "boolean-like string result": ("x", "true", False),
    "bool attr result": ("x", True, True),
    "constant true": ("1 = 1", None, True),
    "constant error": ("1 / 0 = 0", None, False),
}


@pytest.mark.parametrize(("expression", "x", "matches"), FILTERS.values(), ids=FILTERS.keys())
def test_filter(expression: str, x: Value | None, matches: bool) -> None:
    event: dict[str, Value] = {**EVENT} if x is None else {**EVENT, "x": x}
    assert compile_filter(expression)(event) is matches
    value, errors = evaluate(parse(expression), event)
    assert (value is True and not errors) is matches


@pytest.mark.parametrize(
    "expression",
    [
        "x = 'a'",
        "x = 1",
        "x = TRUE",
        "x < 2",
        "x LIKE 'a%'",
        "x IN ('a', 1)",
        "x NOT IN ('a')",
        "x IN (type)",
        "LENGTH(x) = 1",
        "NOT x",
        "-x = 1",
        "x",
    ],
)
def test_foreign_attribute_types_never_raise(expression: str) -> None:
    """The codec only produces str/int/bool; anything else must still not crash a dispatcher."""
    for odd in (1.5, b"bytes", ["list"]):
        event = {**EVENT, "x": odd}
        assert compile_filter(expression)(event) in (True, False)  # type: ignore[arg-type]
        value, _ = compile(expression)(event)  # type: ignore[arg-type]
        assert value is not None


@pytest.mark.parametrize(
    ("expression", "x"),
    [("1 AND x", 1), ("x AND 1", 1), ("'TRUE' AND x", "true"), ("x AND x", 5)],
)
def test_and_casts_each_operand_to_boolean_in_filters(expression: str, x: Value) -> None:
    """Found by hypothesis: a non-Boolean constant operand is true once cast, in filters too."""
    event = {**EVENT, "x": x}
    assert compile(expression)(event) == (True, [])
    assert compile_filter(expression)(event) is True


def test_trim_strips_exactly_unicode_white_space_without_controls() -> None:
    """TRIM's set is Go's unicode.IsSpace: categories Zs/Zl/Zp, tab..CR and U+0085."""
    import sys
    import unicodedata

    from kbroker.core.cesql.functions import BUILTINS

    trim = next(f for f in BUILTINS if f.name == "TRIM").impl
    spaces = {
        ch
        for ch in map(chr, range(sys.maxunicode + 1))
        if unicodedata.category(ch) in ("Zs", "Zl", "Zp")
    } | set("\t\n\v\f\r\x85")
    for ch in map(chr, range(0x3001)):
        assert trim(ch + "x" + ch) == ("x" if ch in spaces else ch + "x" + ch), hex(ord(ch))
