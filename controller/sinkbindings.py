"""SinkBinding: its subject validated as Knative's webhook does, and the env it puts into pods.

A SinkBinding gives every container (and init container) of its subject's pod template
(`spec.template.spec`: Deployment, StatefulSet, DaemonSet, ReplicaSet, Knative Service, any
PodSpecable whose template may change; a Job's may not) the variables `K_SINK` (the resolved
sink URL) and `K_CE_OVERRIDES` (the JSON `{"extensions": {...}}` of `ceOverrides`, an empty
string when there are none), replacing earlier values; removing the binding takes them out
again. The subject is `apiVersion`, `kind`, `namespace` (the binding's own, the default) and
either `name` or a label `selector`.

Pure functions over plain dicts: the Kubernetes side (controller/kube/sources_sinkbinding) reads
the subjects and writes what these return.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kbroker.controller import selectors, validate
from kbroker.controller.pingsources import ce_overrides

ENV_NAMES = ("K_SINK", "K_CE_OVERRIDES", "K_CA_CERTS")
CONDITIONS = (
    "SinkBindingAvailable",
    "SinkProvided",
    "OIDCIdentityCreated",
    "OIDCTokenSecretCreated",
    "TrustBundlePropagated",
)
CONTAINER_LISTS = ("initContainers", "containers")


@dataclass(frozen=True, slots=True)
class Subject:
    api_version: str
    kind: str
    namespace: str
    name: str = ""
    selector: selectors.Selector | None = None


def parse(
    spec: Any, namespace: str
) -> tuple[Subject, tuple[tuple[str, str], ...], validate.Issues]:
    """(subject, ceOverrides extensions, issues) of a SinkBinding's spec."""
    issues = validate.Issues()
    if not isinstance(spec, Mapping):
        issues.error("spec", "expected a mapping")
        spec = {}
    raw = spec.get("subject")
    if not isinstance(raw, Mapping):
        issues.error("spec.subject", "missing field(s): spec.subject")
        raw = {}
    for f in ("apiVersion", "kind"):
        if not raw.get(f):
            issues.error(f"spec.subject.{f}", f"missing field(s): spec.subject.{f}")
    ns = str(raw.get("namespace") or namespace)
    if ns != namespace:
        issues.error("spec.subject.namespace", f"invalid value: {ns}: spec.subject.namespace")
    name = str(raw.get("name") or "")
    sel = None
    if raw.get("selector") is not None:
        try:
            sel = selectors.parse(raw["selector"])
        except selectors.SelectorError as exc:
            issues.error("spec.subject.selector", f"invalid value: {exc}: spec.subject.selector")
    if name and raw.get("selector") is not None:
        issues.error(
            "spec.subject",
            "expected exactly one, got both: spec.subject.name, spec.subject.selector",
        )
    elif not name and raw.get("selector") is None:
        issues.error(
            "spec.subject",
            "expected exactly one, got neither: spec.subject.name, spec.subject.selector",
        )
    sink = spec.get("sink")
    if not isinstance(sink, Mapping) or not (sink.get("ref") or sink.get("uri")):
        issues.error("spec.sink", "expected at least one, got none: ref, uri: spec.sink")
    extensions = ce_overrides(spec, issues)
    subject = Subject(str(raw.get("apiVersion") or ""), str(raw.get("kind") or ""), ns, name, sel)
    return subject, extensions, issues


def overrides_json(extensions: tuple[tuple[str, str], ...]) -> str:
    return json.dumps({"extensions": dict(extensions)}, sort_keys=True) if extensions else ""


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    spec = obj.get("spec")
    template = spec.get("template") if isinstance(spec, Mapping) else None
    inner = template.get("spec") if isinstance(template, Mapping) else None
    return inner if isinstance(inner, Mapping) else None


def _with_env(containers: Any, env: list[dict[str, str]]) -> list[Any]:
    out = []
    for c in containers or ():
        c = copy.deepcopy(c)
        kept = [e for e in c.get("env") or () if e.get("name") not in ENV_NAMES]
        c["env"] = kept + env
        if not c["env"]:
            del c["env"]
        out.append(c)
    return out


def template_patch(obj: Mapping[str, Any], env: list[dict[str, str]]) -> dict[str, Any] | None:
    """The pod-template part of a merge patch giving every container exactly `env` among
    ENV_NAMES (`[]` removes them); None when nothing would change or there is no template."""
    ps = pod_spec(obj)
    if ps is None:
        return None
    changed: dict[str, Any] = {}
    for field in CONTAINER_LISTS:
        if ps.get(field) is None:
            continue
        new = _with_env(ps[field], env)
        if new != list(ps[field]):
            changed[field] = new  # a merge patch replaces lists whole
    if not changed:
        return None
    return {"spec": {"template": {"spec": changed}}}


def bound_env(sink_uri: str, extensions: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [
        {"name": "K_SINK", "value": sink_uri},
        {"name": "K_CE_OVERRIDES", "value": overrides_json(extensions)},
    ]
