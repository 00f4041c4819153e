"""EventPolicy (`eventing.knative.dev/v1alpha1`) -> its status, and who may send to each Broker.

Rules (Knative's EventPolicy, as users see it):
- `spec.to` names Brokers by `ref` (group and kind compared, the version ignored, the name
  case-insensitively) or by `selector` (matchLabels / matchExpressions on the Broker's labels); an
  empty `to` applies to every Broker in the policy's namespace.
- `spec.from` lists `sub` subjects (`*` only as the last character, a prefix match) or `ref`s to
  senders, resolved to their subjects in `status.from`: a ServiceAccount is
  `system:serviceaccount:<ns>:<name>`, a Trigger is its OIDC identity.
- `spec.filters` are Trigger filters, evaluated against the event at ingress; all must pass.
- A policy is Ready when authentication-oidc is on and every `from` resolved. A Broker that a
  policy which is not Ready applies to is not Ready (condition `EventPoliciesReady`), as Knative
  reports it; a Broker lists the Ready policies applying to it in `status.policies`.

What this module refuses: enforcement (ingress does that, from the contract) and anything that is
not a pure function of the compilation. References to kinds other than ServiceAccount and Trigger
stay unresolved: standalone mode has nothing to look their identities up in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kbroker.controller import features, status, validate
from kbroker.controller.brokers import BrokerOutcome
from kbroker.controller.compilation import Compilation, Obj
from kbroker.core import contract

POLICY_API = "eventing.knative.dev/v1alpha1"
EVENTING_GROUP = "eventing.knative.dev"
POLICY_CONDITIONS = ("AuthenticationEnabled", "SubjectsResolved")
REASON_OIDC_DISABLED = "OIDCAuthenticationDisabled"
REASON_NOT_RESOLVED = "SubjectsNotResolved"
REASON_INVALID = "InvalidEventPolicy"
MESSAGE_OIDC_DISABLED = 'Feature "authentication-oidc" must be enabled to support Authorization'
_MODE_NAMES = {
    contract.AuthorizationMode.ALLOW_ALL: "Allow-All",
    contract.AuthorizationMode.DENY_ALL: "Deny-All",
    contract.AuthorizationMode.ALLOW_SAME_NAMESPACE: "Allow-Same-Namespace",
}


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    obj: Obj
    to: tuple[Mapping[str, Any], ...]  # validated `spec.to` entries; empty = whole namespace
    policy: contract.Policy
    valid: bool  # False: applies to nothing (Knative's webhook would have refused it)
    ready: bool

    def applies_to(self, broker: Obj) -> bool:
        if not self.valid or broker.namespace != self.obj.namespace:
            return False
        return not self.to or any(_targets(t, broker) for t in self.to)


def compile_policies(
    c: Compilation, oidc: contract.OIDC | None
) -> dict[tuple[str, str], CompiledPolicy]:
    """Every EventPolicy compiled, its status recorded in `c.statuses`."""
    out: dict[tuple[str, str], CompiledPolicy] = {}
    for key, o in sorted(c.eventpolicies.items()):
        out[key] = _compile_one(c, o, oidc)
    return out


def _compile_one(c: Compilation, o: Obj, oidc: contract.OIDC | None) -> CompiledPolicy:
    spec = o.spec if isinstance(o.spec, Mapping) else {}
    issues = validate.Issues()
    if not isinstance(o.spec, Mapping):
        issues.error("spec", "expected a mapping")
    to = _to(spec.get("to"), issues)
    subjects, unresolved = _from(c, o, spec.get("from"), issues)
    filters = validate.filters(spec.get("filters"), issues)
    c.report(o, issues)
    given: dict[str, status.Condition] = {
        "AuthenticationEnabled": status.true("AuthenticationEnabled")
        if oidc is not None
        else status.false("AuthenticationEnabled", REASON_OIDC_DISABLED, MESSAGE_OIDC_DISABLED),
        "SubjectsResolved": status.true("SubjectsResolved")
        if not unresolved
        else status.false("SubjectsResolved", REASON_NOT_RESOLVED, "; ".join(unresolved)),
    }
    conditions = status.with_ready(POLICY_CONDITIONS, given)
    if issues.errors:
        message = "; ".join(str(i) for i in issues.errors)
        conditions = (status.false(status.READY, REASON_INVALID, message), *conditions[1:])
    st = status.ObjectStatus(
        kind="EventPolicy",
        namespace=o.namespace,
        name=o.name,
        generation=o.generation,
        conditions=conditions,
        from_subjects=subjects,
    )
    c.statuses[("EventPolicy", o.namespace, o.name)] = st
    return CompiledPolicy(
        obj=o,
        to=to,
        policy=contract.Policy(name=o.name, subjects=subjects, filters=filters),
        valid=not issues.errors,
        ready=st.ready,
    )


def _group(api_version: object) -> str:
    api = str(api_version or "")
    return api.rpartition("/")[0] if "/" in api else ""


def _to(raw: Any, issues: validate.Issues) -> tuple[Mapping[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        issues.error("spec.to", "expected a list")
        return ()
    out: list[Mapping[str, Any]] = []
    for i, t in enumerate(raw):
        where = f"spec.to[{i}]"
        if not isinstance(t, Mapping):
            issues.error(where, "expected a mapping with ref or selector")
            continue
        ref, sel = t.get("ref"), t.get("selector")
        if ref and sel:
            issues.error(where, f"expected exactly one, got both: {where}.ref, {where}.selector")
        elif not ref and not sel:
            issues.error(where, f"expected exactly one, got neither: {where}.ref, {where}.selector")
        else:
            item = ref if ref else sel
            need = ("apiVersion", "kind", "name") if ref else ("apiVersion", "kind")
            part = "ref" if ref else "selector"
            if not isinstance(item, Mapping):
                issues.error(f"{where}.{part}", "expected a mapping")
                continue
            missing = [f"{where}.{part}.{k}" for k in need if not item.get(k)]
            if missing:
                issues.error(where, "missing field(s): " + ", ".join(missing))
                continue
            out.append(t)
    return tuple(out)


def _targets(t: Mapping[str, Any], broker: Obj) -> bool:
    item = t.get("ref") or t.get("selector") or {}
    if _group(item.get("apiVersion")) != EVENTING_GROUP or str(item.get("kind")) != "Broker":
        return False
    if t.get("ref"):
        return str(item.get("name", "")).lower() == broker.name.lower()
    labels = broker.meta.get("labels")
    return matches_selector(item, labels if isinstance(labels, Mapping) else {})


def matches_selector(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """A Kubernetes LabelSelector (matchLabels AND every matchExpression) against `labels`."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if str(labels.get(k)) != str(v) or k not in labels:
            return False
    for e in selector.get("matchExpressions") or ():
        if not isinstance(e, Mapping):
            return False
        key, op = str(e.get("key", "")), str(e.get("operator", ""))
        values = {str(v) for v in e.get("values") or ()}
        present = key in labels
        value = str(labels.get(key)) if present else None
        if op == "In":
            ok = present and value in values
        elif op == "NotIn":
            ok = not present or value not in values
        elif op == "Exists":
            ok = present
        elif op == "DoesNotExist":
            ok = not present
        else:
            return False
        if not ok:
            return False
    return True


def _from(
    c: Compilation, o: Obj, raw: Any, issues: validate.Issues
) -> tuple[tuple[str, ...], list[str]]:
    """The resolved subjects and what did not resolve."""
    if raw is None:
        return (), []
    if not isinstance(raw, list):
        issues.error("spec.from", "expected a list")
        return (), []
    subjects: list[str] = []
    unresolved: list[str] = []
    for i, f in enumerate(raw):
        where = f"spec.from[{i}]"
        if not isinstance(f, Mapping):
            issues.error(where, "expected a mapping with ref or sub")
            continue
        ref, sub = f.get("ref"), f.get("sub")
        if ref and sub:
            issues.error(where, f"expected exactly one, got both: {where}.ref, {where}.sub")
        elif not ref and not sub:
            issues.error(where, f"expected exactly one, got neither: {where}.ref, {where}.sub")
        elif sub:
            text = str(sub)
            if "*" in text[:-1]:
                issues.error(
                    f"{where}.sub", f"invalid value: {text}: '*' is only allowed as suffix"
                )
            else:
                subjects.append(text)
        elif not isinstance(ref, Mapping):
            issues.error(f"{where}.ref", "expected a mapping")
        else:
            missing = [f"{where}.ref.{k}" for k in ("apiVersion", "kind", "name") if not ref.get(k)]
            if missing:
                issues.error(where, "missing field(s): " + ", ".join(missing))
                continue
            subject = _resolve(c, ref, o.namespace)
            if subject is None:
                ns = ref.get("namespace") or o.namespace
                unresolved.append(
                    f"could not resolve subjects of {ref.get('kind')} {ns}/{ref.get('name')}"
                )
            else:
                subjects.append(subject)
    return tuple(subjects), unresolved


def _resolve(c: Compilation, ref: Mapping[str, Any], namespace: str) -> str | None:
    ns, name = str(ref.get("namespace") or namespace), str(ref["name"])
    group, kind = _group(ref.get("apiVersion")), str(ref.get("kind"))
    if group == "" and kind == "ServiceAccount":
        return f"system:serviceaccount:{ns}:{name}"
    if group == EVENTING_GROUP and kind == "Trigger" and (ns, name) in c.triggers:
        return features.trigger_identity(ns, name)
    return None


def apply(
    outcome: BrokerOutcome,
    policies: Mapping[tuple[str, str], CompiledPolicy],
    oidc: contract.OIDC | None,
) -> BrokerOutcome:
    """The Broker's outcome with its EventPoliciesReady condition, `status.policies`, audience,
    and the Ready policies that ingress enforces for it."""
    st = outcome.status
    applying = sorted(
        (p for p in policies.values() if p.applies_to(outcome.obj)), key=lambda p: p.obj.name
    )
    if oidc is None:
        cond = status.true(
            "EventPoliciesReady", status.REASON_OIDC_DISABLED_BROKER, MESSAGE_OIDC_DISABLED
        )
    elif not applying:
        mode = _MODE_NAMES[oidc.default_mode]
        cond = status.true(
            "EventPoliciesReady", "DefaultAuthorizationMode", f'Default authz mode is "{mode}"'
        )
    elif not_ready := [p.obj.name for p in applying if not p.ready]:
        cond = status.false(
            "EventPoliciesReady",
            "EventPoliciesNotReady",
            f"event policies {', '.join(not_ready)} are not ready",
        )
    else:
        cond = status.true("EventPoliciesReady")
    ready = [p for p in applying if p.ready] if oidc is not None else []
    given = {c.type: c for c in st.conditions[1:]}
    given["EventPoliciesReady"] = cond
    audience = features.broker_audience(st.namespace, st.name) if oidc is not None else None
    st = dataclasses.replace(
        st,
        conditions=status.with_ready(status.BROKER_CONDITIONS, given),
        audience=audience,
        policies=tuple(p.obj.name for p in ready),
    )
    entry = outcome.entry
    if entry is not None and st.ready:
        entry = dataclasses.replace(
            entry, audience=audience or "", policies=tuple(p.policy for p in ready)
        )
    else:
        entry = None
    return dataclasses.replace(outcome, entry=entry, status=st)
