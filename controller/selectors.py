"""Kubernetes label selectors (matchLabels + matchExpressions): parsed once, matched in memory.

ApiServerSource filters watched objects and namespaces with them, and SinkBinding picks its
subjects with them. Matching in memory instead of passing `labelSelector` to the API server keeps
one watch per kind; the operators are Kubernetes' four (In, NotIn, Exists, DoesNotExist).

What this module refuses: I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class SelectorError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Selector:
    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, Any] | None) -> bool:
        labels = labels or {}
        for k, v in self.match_labels:
            if labels.get(k) != v:
                return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True


def parse(raw: Any) -> Selector:
    """A LabelSelector mapping -> Selector; raises SelectorError saying what is wrong."""
    if not isinstance(raw, Mapping):
        raise SelectorError("expected a mapping with matchLabels and/or matchExpressions")
    labels = raw.get("matchLabels")
    labels = {} if labels is None else labels
    if not isinstance(labels, Mapping):
        raise SelectorError("matchLabels: expected a map of label to value")
    exprs = raw.get("matchExpressions")
    exprs = [] if exprs is None else exprs
    if not isinstance(exprs, list):
        raise SelectorError("matchExpressions: expected a list")
    out = []
    for i, e in enumerate(exprs):
        if not isinstance(e, Mapping) or not e.get("key"):
            raise SelectorError(f"matchExpressions[{i}]: a key is required")
        op = e.get("operator")
        values = e.get("values") or []
        if op not in OPERATORS:
            raise SelectorError(f'matchExpressions[{i}]: "{op}" is not a valid selector operator')
        if op in ("In", "NotIn") and not values:
            raise SelectorError(f"matchExpressions[{i}]: values must be non-empty for {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise SelectorError(f"matchExpressions[{i}]: values must be empty for {op}")
        out.append((str(e["key"]), str(op), tuple(sorted(str(v) for v in values))))
    return Selector(tuple(sorted((str(k), str(v)) for k, v in labels.items())), tuple(out))
