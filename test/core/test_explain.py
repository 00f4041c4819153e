"""core/explain: the explain tree's verdict is the dispatcher's, and it names the reason."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kbroker.core import filters
from kbroker.core.contract import FilterSpec
from kbroker.core.events import AttrValue
from kbroker.core.explain import check_cesql, explain

EVENT: dict[str, AttrValue] = {
    "specversion": "1.0",
    "id": "1",
    "type": "a.b",
    "source": "/s",
    "count": 5,
}

NAMES = st.sampled_from(["type", "source", "subject", "dataschema", "schemaurl", "x"])
VALUES = st.sampled_from(["", "a", "a.b", "b", "ab", "/s", "1", "true"])
ATTR_VALUES = st.one_of(VALUES, st.integers(-2, 2), st.booleans())
EXPRESSIONS = st.sampled_from(
    [
        "type = 'a.b'",
        "subject = 'x'",
        "EXISTS subject",
        "type LIKE 'a%'",
        "x IN ('a', 'b')",
        "count > 3",
        "x + 1 = 2",
        "NOT (type = 'b')",
        "UNKNOWNFN(type)",
        "type = ",
        "1 / 0 = 1",
        "true",
        "source",
    ]
)
PAIRS = st.lists(st.tuples(NAMES, VALUES), max_size=3).map(tuple)


def _leaf() -> st.SearchStrategy[FilterSpec]:
    return st.one_of(
        st.builds(FilterSpec, st.sampled_from(["attributes", "exact", "prefix", "suffix"]), PAIRS),
        st.builds(lambda e: FilterSpec("cesql", expression=e), EXPRESSIONS),
        st.just(FilterSpec("nosuch")),
    )


SPECS = st.recursive(
    _leaf(),
    lambda inner: st.builds(
        lambda d, kids: FilterSpec(d, children=tuple(kids)),
        st.sampled_from(["all", "any", "not"]),
        st.lists(inner, max_size=3),
    ),
    max_leaves=8,
)
EVENTS = st.dictionaries(NAMES, ATTR_VALUES, max_size=5).map(
    lambda d: {"specversion": "1.0", "id": "1", "count": 4, **d}
)


@settings(max_examples=400, deadline=None)
@given(st.lists(SPECS, max_size=3), EVENTS)
def test_explain_agrees_with_the_dispatcher(
    specs: list[FilterSpec], attrs: dict[str, AttrValue]
) -> None:
    assert explain(specs, attrs).matched is filters.build(specs)(attrs)


def test_names_the_failing_attribute() -> None:
    tree = explain([FilterSpec("exact", (("type", "x.y"),))], EVENT)
    assert not tree.matched
    assert tree.detail == "type = 'a.b' expected 'x.y'"


def test_missing_attribute_in_a_group() -> None:
    spec = FilterSpec(
        "all",
        children=(
            FilterSpec("exact", (("type", "a.b"),)),
            FilterSpec("prefix", (("subject", "x"),)),
        ),
    )
    tree = explain([spec], EVENT)
    assert not tree.matched
    assert [c.matched for c in tree.children] == [True, False]
    assert tree.children[1].detail == "attribute subject missing"
    assert tree.detail == "1 of 2 matched"


def test_cesql_value_and_errors() -> None:
    tree = explain([FilterSpec("cesql", expression="subject = 'x'")], EVENT)
    assert not tree.matched
    assert tree.value is False
    assert tree.errors and tree.errors[0].startswith("missingAttribute")
    assert tree.to_json()["errors"] == list(tree.errors)


def test_legacy_empty_value_means_present() -> None:
    ok = explain([FilterSpec("attributes", (("source", ""),))], EVENT)
    missing = explain([FilterSpec("attributes", (("subject", ""),))], EVENT)
    assert ok.matched and not missing.matched
    assert "missing" in missing.children[0].detail


def test_not_inverts_and_text_lines() -> None:
    tree = explain([FilterSpec("not", children=(FilterSpec("exact", (("type", "a.b"),)),))], EVENT)
    assert not tree.matched
    assert tree.lines()[0].startswith("✗ not")
    assert tree.lines()[1].startswith("  ✓ exact")


def test_check_reports_line_column_and_caret() -> None:
    result = check_cesql("type = 'a'\n  AND AND")
    assert not result.valid and result.error is not None
    assert (result.error.line, result.error.column) == (2, 7)
    assert (
        result.error.excerpt.splitlines()[1].index("^")
        == result.error.excerpt.splitlines()[0].index("AND AND") + 4
    )


def test_check_lists_referenced_attributes() -> None:
    result = check_cesql("type = 'a' AND (EXISTS subject OR myext LIKE 'x%') AND type <> 'b'")
    assert result.valid and result.error is None
    assert result.attributes == ("type", "subject", "myext")
    assert check_cesql("nosuch(type)").warnings
