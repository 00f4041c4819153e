"""The Kubernetes controller's decisions, as pure functions over plain dicts (no I/O, no clock).

What `controller/kube/reconciler.py` does with the API server is mechanical (watch, patch,
write); what it *decides* lives here so it is tested table-driven without a server:

- immutable fields without a webhook: a Broker's accepted class and `spec.config` are recorded in
  its `status.annotations` (as Knative's Kafka broker records its topic settings there), so a
  restarted controller still knows them and users' metadata stays untouched; an update that
  changes them is reported on the object's status while the accepted version keeps being served;
- the status written back: compile's Knative status, plus what only the cluster knows (storage
  failures, immutable-field violations, and "Ready only once the data plane serves it");
- the status patch: a JSON merge patch that also removes fields that went away, or nothing at
  all when the status is unchanged (the common case: one write per real change, not per resync).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kbroker.controller import defaults as br_defaults
from kbroker.controller import status, validate

FINALIZER = "kbroker.dev/broker"
ACCEPTED_ANNOTATION = "kbroker.dev/accepted"
REASON_IMMUTABLE = "ImmutableFieldChanged"
REASON_STORAGE = "StorageNotReady"
REASON_DATA_PLANE = "DataPlaneNotReady"

Key = tuple[str, str, str]  # (kind, namespace, name), as compile's statuses


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def key_of(obj: Mapping[str, Any]) -> Key:
    m = meta(obj)
    return (str(obj.get("kind") or ""), str(m.get("namespace") or ""), str(m.get("name") or ""))


def deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def has_finalizer(obj: Mapping[str, Any]) -> bool:
    return FINALIZER in (meta(obj).get("finalizers") or ())


# --- immutable fields ----------------------------------------------------------------------------


def accepted_fields(broker: Mapping[str, Any]) -> dict[str, Any]:
    """The immutable parts of a Broker as given (class annotation, spec.config), for recording."""
    annotations = meta(broker).get("annotations") or {}
    spec = broker.get("spec") or {}
    return {
        "class": annotations.get(validate.CLASS_ANNOTATION),
        "config": spec.get("config") if isinstance(spec, Mapping) else None,
    }


def recorded(broker: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the status says was accepted; None when absent or unreadable."""
    st = broker.get("status")
    annotations = st.get("annotations") if isinstance(st, Mapping) else None
    raw = annotations.get(ACCEPTED_ANNOTATION) if isinstance(annotations, Mapping) else None
    if raw is None:
        return None
    try:
        value = json.loads(str(raw))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def accepted_record(broker: Mapping[str, Any]) -> str:
    """The record to keep in status: the one already there, else the Broker as it is now."""
    value = recorded(broker)
    return json.dumps(value if value is not None else accepted_fields(broker), sort_keys=True)


def served_broker(
    broker: Mapping[str, Any],
    accepted: Mapping[str, Any] | None,
    defaults: br_defaults.Defaults | None,
    default_class: str,
) -> tuple[Mapping[str, Any], list[str]]:
    """The version to compile (the accepted one if `broker` changed an immutable field) and why."""
    if accepted is None:
        return broker, []
    old = copy.deepcopy(dict(broker))
    metadata = old.setdefault("metadata", {})
    annotations = dict(metadata.get("annotations") or {})
    annotations.pop(validate.CLASS_ANNOTATION, None)
    if accepted.get("class"):
        annotations[validate.CLASS_ANNOTATION] = accepted["class"]
    metadata["annotations"] = annotations
    spec = old.get("spec")
    spec = dict(spec) if isinstance(spec, Mapping) else {}
    spec.pop("config", None)
    if accepted.get("config") is not None:
        spec["config"] = accepted["config"]
    old["spec"] = spec
    problems = validate.validate_update(old, broker, defaults=defaults, default_class=default_class)
    return (old, problems) if problems else (broker, [])


def served_trigger(
    trigger: Mapping[str, Any], accepted_broker: str | None
) -> tuple[Mapping[str, Any], list[str]]:
    """Same for a Trigger's spec.broker (our CRD also refuses that change; this is the backstop)."""
    spec = trigger.get("spec")
    if accepted_broker is None or not isinstance(spec, Mapping):
        return trigger, []
    if spec.get("broker") == accepted_broker:
        return trigger, []
    old = {**trigger, "spec": {**spec, "broker": accepted_broker}}
    return old, validate.validate_update(old, trigger)


# --- status --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Overrides:
    """What the cluster knows that compile does not, for one object."""

    violations: tuple[str, ...] = ()
    storage_error: str | None = None
    waiting_for: int | None = None  # contract generation the data plane does not serve yet
    accepted: str | None = None  # a Broker's accepted immutable fields (JSON) to keep in status


def effective(st: status.ObjectStatus, o: Overrides) -> status.ObjectStatus:
    conditions = st.conditions
    if o.storage_error is not None and st.kind == "Broker":
        deps = {c.type: c for c in conditions if c.type != status.READY}
        deps["TriggerChannelReady"] = status.false(
            "TriggerChannelReady", REASON_STORAGE, o.storage_error
        )
        conditions = status.with_ready(status.BROKER_CONDITIONS, deps)
    ready = conditions[0]
    if o.storage_error is not None and st.kind != "Broker" and ready.status == status.TRUE:
        # A channel, or a flow one of whose channels has no log or topic: nothing can be stored.
        ready = status.false(status.READY, REASON_STORAGE, o.storage_error)
    if o.violations:
        ready = status.false(
            status.READY,
            REASON_IMMUTABLE,
            "; ".join(o.violations) + " (the previously accepted version is still served)",
        )
    elif o.waiting_for is not None and ready.status == status.TRUE:
        ready = status.unknown(
            status.READY,
            REASON_DATA_PLANE,
            f"waiting for ingress and filter to serve contract generation {o.waiting_for}",
        )
    annotations = st.annotations
    if o.accepted is not None:
        annotations = tuple(sorted({**dict(annotations), ACCEPTED_ANNOTATION: o.accepted}.items()))
    return dataclasses.replace(st, conditions=(ready, *conditions[1:]), annotations=annotations)


def desired_status(
    st: status.ObjectStatus, o: Overrides, previous: Mapping[str, Any] | None, now: datetime
) -> dict[str, Any]:
    return effective(st, o).to_k8s(now, previous=previous)


def status_patch(
    desired: Mapping[str, Any], existing: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """A merge patch turning `existing` into `desired`, or None when they are equal."""
    existing = existing or {}
    if dict(existing) == dict(desired):
        return None
    body: dict[str, Any] = dict(desired)
    for k in existing:
        if k not in desired:
            body[k] = None  # merge patch: null deletes
    return {"status": body}


# --- references ----------------------------------------------------------------------------------


def refs(objects: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], str]]:
    """Every (ref, namespace) the compiler may ask the resolver about: subscribers, dead letters."""
    out: list[tuple[Mapping[str, Any], str]] = []
    for obj in objects:
        spec = obj.get("spec")
        if not isinstance(spec, Mapping):
            continue
        ns = str(meta(obj).get("namespace") or "default")
        delivery = spec.get("delivery")
        dests = [spec.get("subscriber")]
        if isinstance(delivery, Mapping):
            dests.append(delivery.get("deadLetterSink"))
        for dest in dests:
            if isinstance(dest, Mapping) and isinstance(dest.get("ref"), Mapping):
                out.append((dest["ref"], ns))
    return out


def ref_key(ref: Mapping[str, Any], namespace: str) -> tuple[str, str, str, str]:
    return (
        str(ref.get("apiVersion") or ""),
        str(ref.get("kind") or ""),
        str(ref.get("namespace") or namespace),
        str(ref.get("name") or ""),
    )


def service_url(name: str, namespace: str, service: Mapping[str, Any]) -> str:
    """Knative's Service resolution: the cluster DNS name, plus the port when it is not 80."""
    ports = (service.get("spec") or {}).get("ports") or []
    port = ports[0].get("port") if ports and isinstance(ports[0], Mapping) else 80
    suffix = "" if port in (80, None) else f":{port}"
    return f"http://{name}.{namespace}.svc.cluster.local{suffix}/"


def plural_guess(kind: str) -> str:
    """The conventional plural when discovery cannot tell (Kubernetes lowercases and adds s)."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    return lower + "s"
