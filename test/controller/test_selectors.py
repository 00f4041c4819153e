"""controller/selectors: Kubernetes label selectors parsed and matched in memory."""

from __future__ import annotations

from typing import Any

import pytest
from kbroker.controller import selectors


@pytest.mark.parametrize(
    ("raw", "labels", "expected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ],
)
def test_matching(raw: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert selectors.parse(raw).matches(labels) is expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "expected a mapping"),
        ({"matchLabels": []}, "matchLabels: expected a map"),
        ({"matchExpressions": [{"operator": "In", "values": ["x"]}]}, "a key is required"),
        ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "values must be non-empty"),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "values must be empty",
        ),
    ],
)
def test_invalid_selectors(raw: Any, message: str) -> None:
    with pytest.raises(selectors.SelectorError, match=message):
        selectors.parse(raw)
