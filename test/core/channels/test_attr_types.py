"""The typed-extension header shared by the Kafka and NATS records."""

from __future__ import annotations

import pytest
from kbroker.core.channels import _attr_types as attr_types
from kbroker.core.events import AttrValue


@pytest.mark.parametrize(
    ("attrs", "spec"),
    [
        ({"id": "1", "flag": True, "n": 7}, "flag=b,n=i"),
        ({"id": "1", "neg": -3, "off": False}, "neg=i,off=b"),
        ({"id": "1", "s": "text"}, None),
    ],
    ids=["bool-int", "negative-false", "strings-only"],
)
def test_types_survive_a_trip_as_strings(attrs: dict[str, AttrValue], spec: str | None) -> None:
    assert attr_types.types_of(attrs) == spec
    as_text: dict[str, AttrValue] = {
        k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in attrs.items()
    }
    if spec is not None:
        attr_types.retype(as_text, spec)
    assert as_text == attrs


def test_a_value_that_no_longer_parses_stays_a_string() -> None:
    attrs: dict[str, AttrValue] = {"flag": "yes", "n": "7.5", "gone": "x"}
    attr_types.retype(attrs, "flag=b,n=i,missing=i")
    assert attrs == {"flag": "yes", "n": "7.5", "gone": "x"}
