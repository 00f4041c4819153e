"""core/ttl: the loop guard both ingress and the dispatcher apply (their own tests check the 400 and
the dropped reply end to end: test/ingress/test_routes.py, test/filter/test_dispatch.py)."""

from __future__ import annotations

import pytest
from kbroker.core import ttl
from kbroker.core.events import AttrValue

BASE: dict[str, AttrValue] = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


def test_the_extension_is_knative_s() -> None:
    assert (ttl.EXTENSION, ttl.DEFAULT) == ("knativebrokerttl", 255)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (None, None),
        ("5", 5),
        (" 7 ", 7),  # int() tolerates surrounding blanks, as ingress always has
        (3, 3),  # a JSON integer from structured mode
        ("0", 0),
        ("-1", -1),
        ("5.0", None),
        ("ten", None),
        ("", None),
        (True, None),  # a JSON boolean is no count, though int(True) == 1
        (False, None),
    ],
)
def test_parse(raw: AttrValue | None, want: int | None) -> None:
    attrs = dict(BASE) if raw is None else {**BASE, ttl.EXTENSION: raw}
    assert ttl.parse(attrs) == want


@pytest.mark.parametrize(
    ("raw", "admitted", "stored"),
    [
        (None, True, "255"),  # stamped with the default
        ("5", True, "5"),  # left as it came
        (1, True, 1),
        ("0", False, "0"),  # used up: the event has looped
        ("-3", False, "-3"),
        ("x", False, "x"),
        (True, False, True),
    ],
)
def test_admit(raw: AttrValue | None, admitted: bool, stored: AttrValue) -> None:
    attrs = dict(BASE) if raw is None else {**BASE, ttl.EXTENSION: raw}
    assert ttl.admit(attrs) is admitted
    assert attrs[ttl.EXTENSION] == stored


def test_admit_stamps_the_given_default() -> None:
    attrs = dict(BASE)
    assert ttl.admit(attrs, default=10)
    assert attrs[ttl.EXTENSION] == "10"


@pytest.mark.parametrize(
    ("count", "want"),
    [(10, 9), (2, 1), (1, None), (0, None), (-5, None), (None, 254)],
    ids=["ten", "two", "last-hop", "zero", "negative", "none-counts-as-default"],
)
def test_next_hop(count: int | None, want: int | None) -> None:
    assert ttl.next_hop(count) == want


def test_stamp_and_without() -> None:
    attrs = dict(BASE)
    ttl.stamp(attrs, 9)
    assert attrs[ttl.EXTENSION] == "9" and ttl.parse(attrs) == 9
    assert ttl.without(attrs) == BASE
    assert ttl.EXTENSION in attrs  # without() copies; the event keeps its count
