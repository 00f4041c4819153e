"""What Knative's webhook checks on Sequences, Parallels, Channels and Subscriptions.

Two halves, as in Knative: `check` checks one object's shape (required fields, Destinations),
`validate_update` refuses changes to immutable fields (the standalone folder keeps the previous
version, as the API server would refuse the update):
- Channel: the whole spec but `subscribers` (its `channelTemplate` and `delivery` included);
- Subscription: `spec.channel`;
- KafkaChannel: `numPartitions` and `replicationFactor` (its topic exists already).

A flow's `channelTemplate` may be left out: the webhook defaults it (see
`channels.default_template`). Messages follow Knative's (`missing field(s): spec.steps`); an
invalid step or branch also says what is wrong inside it.

What this module refuses: resolving anything (that is `resolve`'s job, at compile time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.controller import resolve, validate


def destination(raw: Any, where: str, issues: validate.Issues, required: bool = True) -> None:
    """A Destination's shape: `ref` and/or `uri`, a `ref` with apiVersion, kind and name, a `uri`
    alone absolute."""
    if raw is None:
        if required:
            issues.error(where, f"missing field(s): {where}")
        return
    if not isinstance(raw, Mapping):
        issues.error(where, "expected a mapping with ref and/or uri")
        return
    ref, uri = raw.get("ref"), raw.get("uri")
    if ref is None and not uri:
        issues.error(where, "expected at least one, got none: ref, uri")
        return
    if uri is not None and not isinstance(uri, str):
        issues.error(f"{where}.uri", "must be a string")
        return
    if ref is None:
        if not resolve.is_absolute(str(uri)):
            issues.error(
                f"{where}.uri",
                f"invalid value: Relative URI is not allowed when Ref and [apiVersion, kind, "
                f"name] is absent: {uri}",
            )
        return
    if not isinstance(ref, Mapping):
        issues.error(f"{where}.ref", "expected a mapping (apiVersion, kind, name)")
        return
    missing = [k for k in ("apiVersion", "kind", "name") if not ref.get(k)]
    if missing:
        issues.error(f"{where}.ref", "missing field(s): " + ", ".join(missing))
    if uri and resolve.is_absolute(str(uri)):
        issues.error(
            where,
            "Absolute URI is not allowed when Ref or [apiVersion, kind, name] is present",
        )


def template(raw: Any, issues: validate.Issues) -> None:
    if raw is None:
        return  # defaulted, like Knative's webhook does
    if not isinstance(raw, Mapping):
        issues.error("spec.channelTemplate", "expected a mapping (apiVersion, kind, spec)")
        return
    for fld in ("apiVersion", "kind"):
        if not raw.get(fld):
            issues.error(
                f"spec.channelTemplate.{fld}", f"missing field(s): spec.channelTemplate.{fld}"
            )


def _delivery(raw: Any, where: str, issues: validate.Issues) -> None:
    if raw is None:
        return
    _, dls = validate.delivery(raw, where, issues)
    destination(dls, f"{where}.deadLetterSink", issues, required=False)


def check(obj: Mapping[str, Any]) -> validate.Issues:
    """What is wrong with a Sequence or Parallel (empty for other kinds)."""
    issues = validate.Issues()
    kind = obj.get("kind")
    spec = obj.get("spec")
    if kind not in ("Sequence", "Parallel"):
        return issues
    if not isinstance(spec, Mapping):
        issues.error("spec", "expected a mapping")
        return issues
    template(spec.get("channelTemplate"), issues)
    destination(spec.get("reply"), "spec.reply", issues, required=False)
    if kind == "Sequence":
        steps = spec.get("steps")
        if not steps:
            issues.error("spec.steps", "missing field(s): spec.steps")
        elif not isinstance(steps, list):
            issues.error("spec.steps", "expected a list of steps")
        else:
            for i, step in enumerate(steps):
                where = f"spec.steps[{i}]"
                if not isinstance(step, Mapping):
                    issues.error(where, f"invalid value: {step!r}")
                    continue
                destination({k: v for k, v in step.items() if k != "delivery"}, where, issues)
                _delivery(step.get("delivery"), f"{where}.delivery", issues)
        return issues
    branches = spec.get("branches")
    if not branches:
        issues.error("spec.branches", "missing field(s): spec.branches")
    elif not isinstance(branches, list):
        issues.error("spec.branches", "expected a list of branches")
    else:
        for i, branch in enumerate(branches):
            if not isinstance(branch, Mapping):
                issues.error(f"spec.branches[{i}]", f"invalid value: {branch!r}")
                continue
            destination(branch.get("filter"), f"spec.branches.filter[{i}]", issues, False)
            destination(branch.get("subscriber"), f"spec.branches.subscriber[{i}]", issues)
            destination(branch.get("reply"), f"spec.branches.reply[{i}]", issues, False)
            _delivery(branch.get("delivery"), f"spec.branches[{i}].delivery", issues)
    return issues


def validate_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Why `new` may not replace `old` (Knative's immutable fields of these kinds)."""
    kind = new.get("kind")
    before, after = old.get("spec") or {}, new.get("spec") or {}
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return []
    if kind == "Channel":
        strip = ("subscribers",)
        a = {k: v for k, v in before.items() if k not in strip}
        b = {k: v for k, v in after.items() if k not in strip}
        if a != b:
            changed = sorted(k for k in {*a, *b} if a.get(k) != b.get(k))
            return [f"Immutable fields changed (-old +new): spec.{f}" for f in changed]
    elif kind == "Subscription":
        if _ref(before.get("channel")) != _ref(after.get("channel")):
            return ["Immutable fields changed (-old +new): spec.channel"]
    elif kind == "KafkaChannel":
        return [
            f"Immutable fields changed (-old +new): spec.{f}"
            for f in ("numPartitions", "replicationFactor")
            if before.get(f) != after.get(f)
        ]
    return []


def _ref(raw: Any) -> Any:
    if isinstance(raw, Mapping):
        return {k: raw.get(k) for k in ("apiVersion", "kind", "name", "namespace")}
    return raw
