"""An ApiServerSource's spec, validated as Knative's webhook does, before anything is watched.

The rules (`sources.knative.dev/v1`): `resources` is required, each with a parseable group/version
`apiVersion`, a `kind` and an optional label `selector`; `owner` takes the same two checks;
`mode` is `Reference` (the default) or `Resource`, case-sensitive; `serviceAccountName` defaults
to `default`; `namespaceSelector` absent means the source's own namespace, `{}` every namespace;
`sink` and `ceOverrides` as every source's. Messages are Knative's wording, so a user searching for
one finds Knative's documentation. `filters` (a Knative feature flag) is refused with Knative's
message for the flag being off.

What this module refuses: resolving the sink, RBAC checks and watching (controller/kube).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kbroker.controller import selectors, validate
from kbroker.controller.pingsources import ce_overrides
from kbroker.core.contract_apiserver import (
    EVENT_PREFIX,
    MODE_REFERENCE,
    MODE_RESOURCE,
    VERBS,
    WatchedResource,
)

CONDITIONS = ("SinkProvided", "Deployed", "SufficientPermissions", "OIDCIdentityCreated")


@dataclass(frozen=True, slots=True)
class Parsed:
    mode: str
    resources: tuple[WatchedResource, ...]
    owner: tuple[str, str] | None
    service_account: str
    # None: the source's own namespace; an empty selector: every namespace.
    namespace_selector: selectors.Selector | None
    extensions: tuple[tuple[str, str], ...]


def valid_group_version(api_version: str) -> bool:
    parts = api_version.split("/")
    return bool(api_version) and len(parts) <= 2 and all(parts)


def _resource(raw: Any, where: str, issues: validate.Issues) -> WatchedResource | None:
    if not isinstance(raw, Mapping):
        issues.error(where, f"expected a mapping: {where}")
        return None
    api = str(raw.get("apiVersion") or "")
    kind = str(raw.get("kind") or "").strip()
    if not valid_group_version(api):
        issues.error(f"{where}.apiVersion", f"invalid value: {api}: {where}.apiVersion")
    if not kind:
        issues.error(f"{where}.kind", f"missing field(s): {where}.kind")
    sel = selectors.Selector()
    if raw.get("selector") is not None:
        try:
            sel = selectors.parse(raw["selector"])
        except selectors.SelectorError as exc:
            issues.error(f"{where}.selector", f"invalid value: {exc}: {where}.selector")
    return WatchedResource(api, kind, sel.match_labels, sel.match_expressions)


def parse(spec: Any) -> tuple[Parsed, validate.Issues]:
    issues = validate.Issues()
    if not isinstance(spec, Mapping):
        issues.error("spec", "expected a mapping")
        spec = {}
    raw_resources = spec.get("resources")
    resources: list[WatchedResource] = []
    if not raw_resources:
        issues.error("spec.resources", "missing field(s): spec.resources")
    elif not isinstance(raw_resources, list):
        issues.error("spec.resources", "expected a list: spec.resources")
    else:
        for i, r in enumerate(raw_resources):
            if (res := _resource(r, f"spec.resources[{i}]", issues)) is not None:
                resources.append(res)
    owner = None
    if spec.get("owner") is not None:
        o = _resource(spec["owner"], "spec.owner", issues)
        owner = (o.api_version, o.kind) if o else None
    mode = spec.get("mode") or MODE_REFERENCE
    if mode not in (MODE_REFERENCE, MODE_RESOURCE):
        issues.error("spec.mode", f"invalid value: {mode}: spec.mode")
        mode = MODE_REFERENCE
    ns_sel = None
    if spec.get("namespaceSelector") is not None:
        try:
            ns_sel = selectors.parse(spec["namespaceSelector"])
        except selectors.SelectorError as exc:
            issues.error("spec.namespaceSelector", f"invalid value: {exc}: spec.namespaceSelector")
    if spec.get("filters"):
        issues.error(
            "spec.filters",
            "Filters is not empty but the NewAPIServerFilters feature is disabled.",
        )
    sink = spec.get("sink")
    if not isinstance(sink, Mapping) or not (sink.get("ref") or sink.get("uri")):
        issues.error("spec.sink", "expected at least one, got none: ref, uri: spec.sink")
    extensions = ce_overrides(spec, issues)
    parsed = Parsed(
        mode=str(mode),
        resources=tuple(resources),
        owner=owner,
        service_account=str(spec.get("serviceAccountName") or "default"),
        namespace_selector=ns_sel,
        extensions=extensions,
    )
    return parsed, issues


def ce_attributes(mode: str, server: str) -> tuple[tuple[str, str], ...]:
    """status.ceAttributes: the mode's three types, in Knative's order (add, delete, update)."""
    return tuple((f"{EVENT_PREFIX[mode]}.{v}", server) for v in sorted(VERBS))
