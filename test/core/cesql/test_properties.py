"""Property tests: the parser only ever raises ParseError; print/parse round-trips; the compiler
agrees with the reference interpreter on generated expressions and events.

Examples are kept modest so the whole CESQL suite stays well under a minute on two cores.
"""

from __future__ import annotations

from typing import Final

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kbroker.core.cesql import ParseError, compile, compile_filter, parse, warnings
from kbroker.core.cesql import ast as t
from kbroker.core.cesql.casts import INT32_MAX, INT32_MIN, Value
from kbroker.core.cesql.interpreter import evaluate
from kbroker.core.cesql.parser import KEYWORDS
from kbroker.core.cesql.printer import quote, to_source

FAST: Final = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
NAMES: Final = ("a", "b", "c", "type", "n1")
TOKENS: Final = (
    *NAMES,
    *KEYWORDS,
    "tRuE", "not", "(", ")", ",", "=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%",
    "0", "1", "-1", "+7", "2147483647", "-2147483648", "2147483648", "'x'", "'%a_'", "'a\\%'",
    '"y"', "'\\''", "''", "'", '"', "\\", "LOWER", "CONCAT", "CONCAT_WS", "SUBSTRING", "ABS",
    "LENGTH", "INT", "BOOL", "STRING", "LEFT", "FOO", "my_x", "é", "#", "\t", "\n",
)  # fmt: skip
STRINGS: Final = st.one_of(
    st.text(alphabet="ab%_\\'\"é😀 1", max_size=6),
    st.sampled_from(["", "1", "-1", "+5", "007", "true", "FALSE", "2147483648", "a b"]),
)
VALUES: Final = st.one_of(
    STRINGS,
    st.integers(min_value=INT32_MIN, max_value=INT32_MAX),
    st.sampled_from([0, 1, -1, INT32_MIN, INT32_MAX]),
    st.booleans(),
)
EVENTS: Final = st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=len(NAMES))


# -- arbitrary text ---------------------------------------------------------------------------
@FAST
@given(st.text(max_size=60))
def test_any_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        parse(text)
    except ParseError as error:
        assert error.kind == "parse" and 0 <= error.position <= len(text)
        assert "^" in str(error)


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=14), st.sampled_from([" ", ""]), EVENTS)
def test_token_soup(tokens: list[str], glue: str, event: dict[str, Value]) -> None:
    text = glue.join(tokens)
    try:
        tree = parse(text)
    except ParseError:
        return
    assert parse(to_source(tree)) == tree
    warnings(text)
    _agree(tree, event)


# -- generated trees --------------------------------------------------------------------------
def _printable(value: str) -> bool:
    try:
        quote(value)
    except ValueError:
        return False
    return True


def _strings_that_print() -> st.SearchStrategy[str]:
    return STRINGS.filter(_printable)


LEAVES: Final = st.one_of(
    st.builds(t.Constant, _strings_that_print()),
    st.builds(t.Constant, st.integers(min_value=INT32_MIN, max_value=INT32_MAX)),
    st.builds(t.Constant, st.sampled_from([0, 1, -1, 2, 7, INT32_MIN, INT32_MAX])),
    st.builds(t.Constant, st.booleans()),
    st.builds(t.Attribute, st.sampled_from((*NAMES, "missing"))),
    st.builds(t.Exists, st.sampled_from((*NAMES, "missing"))),
)
FUNCTIONS: Final = st.sampled_from(
    [
        ("LENGTH", 1), ("CONCAT", 0), ("CONCAT", 3), ("CONCAT_WS", 1), ("CONCAT_WS", 3),
        ("LOWER", 1), ("UPPER", 1), ("TRIM", 1), ("LEFT", 2), ("RIGHT", 2), ("SUBSTRING", 2),
        ("SUBSTRING", 3), ("ABS", 1), ("INT", 1), ("BOOL", 1), ("STRING", 1), ("IS_INT", 1),
        ("IS_BOOL", 1), ("NOPE", 1), ("LOWER", 2),
    ]
)  # fmt: skip


def _extend(children: st.SearchStrategy[t.Expr]) -> st.SearchStrategy[t.Expr]:
    def call(name_arity: tuple[str, int]) -> st.SearchStrategy[t.Expr]:
        name, arity = name_arity
        args = st.lists(children, min_size=arity, max_size=arity).map(tuple)
        return st.builds(t.Call, st.just(name), args)

    return st.one_of(
        st.builds(t.Not, children),
        st.builds(t.Negate, children),
        st.builds(t.Arithmetic, st.sampled_from(["+", "-", "*", "/", "%"]), children, children),
        st.builds(
            t.Comparison,
            st.sampled_from(["=", "!=", "<>", "<", "<=", ">", ">="]),
            children,
            children,
        ),
        st.builds(
            t.Logical,
            st.sampled_from(["AND", "OR", "XOR"]),
            st.lists(children, min_size=2, max_size=4).map(tuple),
        ),
        st.builds(t.Like, children, _strings_that_print(), st.booleans()),
        st.builds(
            t.In, children, st.lists(children, min_size=1, max_size=3).map(tuple), st.booleans()
        ),
        FUNCTIONS.flatmap(call),
    )


TREES: Final = st.recursive(LEAVES, _extend, max_leaves=12)


@FAST
@given(TREES)
def test_print_then_parse_is_identity(tree: t.Expr) -> None:
    assert parse(to_source(tree)) == tree


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES, EVENTS)
def test_compiler_agrees_with_interpreter(tree: t.Expr, event: dict[str, Value]) -> None:
    _agree(tree, event)


@FAST
@given(
    st.sampled_from(NAMES),
    st.lists(st.sampled_from(["a", "b", "%", "_", "\\%", "\\_", "\\", "é", "ab"]), max_size=6),
    STRINGS,
)
def test_like_matches_reference(name: str, pieces: list[str], value: str) -> None:
    """The compiled LIKE shortcuts (prefix, suffix, infix, pieces) against the plain matcher."""
    pattern = "".join(pieces)
    assume(_printable(pattern))
    _agree(t.Like(t.Attribute(name), pattern), {name: value})


def _agree(tree: t.Expr, event: dict[str, Value]) -> None:
    value, errors = compile(tree)(event)
    ref_value, ref_errors = evaluate(tree, event)
    assert (value, value.__class__, [e.kind for e in errors]) == (
        ref_value,
        ref_value.__class__,
        [e.kind for e in ref_errors],
    ), to_source(tree)
    assert compile_filter(to_source(tree))(event) is (value is True and not errors)
