"""The Trigger form and the Trigger object, each made from the other.

The create/edit page is a view of one Knative Trigger: `to_object` turns the submitted fields
into exactly the object that will be written, `from_object` fills the form from an existing one.
Nothing here decides whether the object is valid: that is the controller's validator, called
through `Objects.validate`. Parsing here is only what turning text fields into YAML needs (a
number field that is not a number stays a string, and the validator says so).

Filter modes: `attributes` (Knative's legacy `filter.attributes`, exact match, "" = present),
`filters` (the dialect list: rows of exact/prefix/suffix/cesql under all/any/not-any, or the
whole `filters` list as YAML for deeper trees), `cesql` (one expression), `none`.
Subscriber and dead-letter sink: one control each, a URI (`http(s)://...`) or a reference
written `Kind/name` (`Broker/dls`, `Service/app`, `ksvc/app`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from kbroker.ui.ports import KObject

API = "eventing.knative.dev/v1"
ORDER = "kafka.eventing.knative.dev/delivery.order"
MAX_IN_FLIGHT = "kbroker.dev/max-in-flight"
START_FROM = "kbroker.dev/start-from"
MODES = ("attributes", "filters", "cesql", "none")
ROW_DIALECTS = ("exact", "prefix", "suffix", "cesql")
GROUPS = ("all", "any", "none")  # "none" is not(any(...))
MIN_ROWS = 3

# `Kind/name` -> the reference's apiVersion and kind.
REF_KINDS: dict[str, tuple[str, str]] = {
    "broker": (API, "Broker"),
    "service": ("v1", "Service"),
    "ksvc": ("serving.knative.dev/v1", "Service"),
    "channel": ("messaging.knative.dev/v1", "Channel"),
    "inmemorychannel": ("messaging.knative.dev/v1", "InMemoryChannel"),
}


@dataclass(slots=True)
class FilterRow:
    dialect: str = "exact"
    attribute: str = ""
    value: str = ""


@dataclass(slots=True)
class TriggerForm:
    namespace: str = "default"
    name: str = ""
    broker: str = ""  # the Broker's name (same namespace)
    mode: str = "none"
    attributes: list[tuple[str, str]] = field(default_factory=list)
    group: str = "all"
    rows: list[FilterRow] = field(default_factory=list)
    filters_yaml: str = ""  # the whole `filters` list, when rows cannot say it
    cesql: str = ""
    subscriber: str = ""
    subscriber_path: str = ""  # a ref's relative `uri`
    inherit: bool = True  # delivery from the Broker
    retry: str = ""
    backoff_policy: str = ""
    backoff_delay: str = ""
    timeout: str = ""
    dead_letter_sink: str = ""
    ordering: str = ""
    max_in_flight: str = ""
    start_from: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    other_annotations: dict[str, str] = field(default_factory=dict)  # kept as they were

    def padded_attributes(self) -> list[tuple[str, str]]:
        return [*self.attributes, *[("", "")] * max(0, MIN_ROWS - len(self.attributes))]

    def padded_rows(self) -> list[FilterRow]:
        return [*self.rows, *[FilterRow() for _ in range(max(0, MIN_ROWS - len(self.rows)))]]


# -- form fields -> form -------------------------------------------------------------------------


def _get(form: Mapping[str, Any], key: str) -> str:
    value = form.get(key, "")
    return value.strip() if isinstance(value, str) else ""


def _indexed(form: Mapping[str, Any], prefix: str) -> list[int]:
    found = set()
    for key in form:
        if key.startswith(prefix) and key[len(prefix) :].isdigit():
            found.add(int(key[len(prefix) :]))
    return sorted(found)


def from_fields(form: Mapping[str, Any]) -> TriggerForm:
    """The form as submitted (a Starlette FormData or any str mapping)."""
    broker = _get(form, "broker")
    namespace = _get(form, "namespace") or "default"
    if "/" in broker:  # the broker select carries "namespace/name"
        namespace, broker = broker.split("/", 1)
    f = TriggerForm(
        namespace=namespace,
        name=_get(form, "name"),
        broker=broker,
        mode=_get(form, "mode") if _get(form, "mode") in MODES else "none",
        group=_get(form, "group") if _get(form, "group") in GROUPS else "all",
        filters_yaml=str(form.get("filters_yaml", "") or ""),
        cesql=str(form.get("cesql", "") or "").strip(),
        subscriber=_get(form, "subscriber"),
        subscriber_path=_get(form, "subscriber_path"),
        inherit=_get(form, "inherit") in ("on", "true", "1"),
        retry=_get(form, "retry"),
        backoff_policy=_get(form, "backoff_policy"),
        backoff_delay=_get(form, "backoff_delay"),
        timeout=_get(form, "timeout"),
        dead_letter_sink=_get(form, "dead_letter_sink"),
        ordering=_get(form, "ordering"),
        max_in_flight=_get(form, "max_in_flight"),
        start_from=_get(form, "start_from"),
    )
    for i in _indexed(form, "attr_key_"):
        key, value = _get(form, f"attr_key_{i}"), str(form.get(f"attr_value_{i}", "") or "")
        if key:
            f.attributes.append((key, value))
    for i in _indexed(form, "row_attr_"):
        row = FilterRow(
            _get(form, f"row_dialect_{i}") or "exact",
            _get(form, f"row_attr_{i}"),
            str(form.get(f"row_value_{i}", "") or ""),
        )
        if row.attribute or (row.dialect == "cesql" and row.value):
            f.rows.append(row)
    try:
        kept = yaml.safe_load(_get(form, "kept_yaml") or "{}")
    except yaml.YAMLError:
        kept = {}
    if isinstance(kept, dict):
        f.labels = {str(k): str(v) for k, v in (kept.get("labels") or {}).items()}
        f.other_annotations = {str(k): str(v) for k, v in (kept.get("annotations") or {}).items()}
    return f


# -- form -> object ------------------------------------------------------------------------------


def destination(text: str, path: str = "") -> dict[str, Any]:
    """One subscriber control's text as a Knative Destination."""
    text = text.strip()
    if "://" in text or not text:
        return {"uri": text}
    kind, _, name = text.partition("/")
    api, real_kind = REF_KINDS.get(kind.lower(), ("v1", kind))
    dest: dict[str, Any] = {"ref": {"apiVersion": api, "kind": real_kind, "name": name}}
    if path:
        dest["uri"] = path
    return dest


def destination_text(dest: Any) -> tuple[str, str]:
    """A Destination as the one control shows it (and a ref's relative uri)."""
    if not isinstance(dest, Mapping):
        return "", ""
    ref = dest.get("ref")
    if isinstance(ref, Mapping):
        kind = str(ref.get("kind", ""))
        if kind == "Service" and str(ref.get("apiVersion", "")).startswith("serving.knative"):
            kind = "ksvc"
        return f"{kind}/{ref.get('name', '')}", str(dest.get("uri", "") or "")
    return str(dest.get("uri", "") or ""), ""


def _number(text: str) -> int | str:
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def _row_filter(row: FilterRow) -> dict[str, Any]:
    if row.dialect == "cesql":
        return {"cesql": row.value}
    return {row.dialect: {row.attribute: row.value}}


def filter_spec(f: TriggerForm) -> dict[str, Any]:
    """The filter part of the spec for the chosen mode (only that mode's fields count)."""
    if f.mode == "attributes" and f.attributes:
        return {"filter": {"attributes": dict(f.attributes)}}
    if f.mode == "cesql" and f.cesql:
        return {"filters": [{"cesql": f.cesql}]}
    if f.mode == "filters":
        if f.filters_yaml.strip():
            try:
                tree = yaml.safe_load(f.filters_yaml)
            except yaml.YAMLError as exc:
                # Written as given: the validator reports the shape, the preview shows it.
                tree = f"invalid YAML: {' '.join(str(exc).split())}"
            return {"filters": tree}
        if f.rows:
            leaves = [_row_filter(r) for r in f.rows]
            if f.group == "any":
                return {"filters": [{"any": leaves}]}
            if f.group == "none":
                return {"filters": [{"not": {"any": leaves}}]}
            return {"filters": leaves}
    return {}


def to_object(f: TriggerForm) -> KObject:
    spec: dict[str, Any] = {"broker": f.broker}
    spec.update(filter_spec(f))
    spec["subscriber"] = destination(f.subscriber, f.subscriber_path)
    if not f.inherit:
        delivery: dict[str, Any] = {}
        if f.retry:
            delivery["retry"] = _number(f.retry)
        if f.backoff_policy:
            delivery["backoffPolicy"] = f.backoff_policy
        if f.backoff_delay:
            delivery["backoffDelay"] = f.backoff_delay
        if f.timeout:
            delivery["timeout"] = f.timeout
        if f.dead_letter_sink:
            delivery["deadLetterSink"] = destination(f.dead_letter_sink)
        if delivery:
            spec["delivery"] = delivery
    annotations = dict(f.other_annotations)
    for key, value in ((ORDER, f.ordering), (MAX_IN_FLIGHT, f.max_in_flight)):
        if value:
            annotations[key] = value
    if f.start_from:
        annotations[START_FROM] = f.start_from
    meta: dict[str, Any] = {"name": f.name, "namespace": f.namespace}
    if f.labels:
        meta["labels"] = dict(f.labels)
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": API, "kind": "Trigger", "metadata": meta, "spec": spec}


# -- object -> form ------------------------------------------------------------------------------


def _rows_of(filters: Any) -> tuple[str, list[FilterRow]] | None:
    """The `filters` list as group + rows, or None when rows cannot say it."""
    if not isinstance(filters, list) or not filters:
        return None
    leaves, group = filters, "all"
    if len(filters) == 1 and isinstance(filters[0], Mapping):
        only = filters[0]
        if isinstance(only.get("any"), list):
            leaves, group = only["any"], "any"
        elif isinstance(only.get("not"), Mapping) and isinstance(only["not"].get("any"), list):
            leaves, group = only["not"]["any"], "none"
    rows: list[FilterRow] = []
    for leaf in leaves:
        if not isinstance(leaf, Mapping) or len(leaf) != 1:
            return None
        ((dialect, body),) = leaf.items()
        if dialect == "cesql" and isinstance(body, str):
            rows.append(FilterRow("cesql", "", body))
        elif dialect in ("exact", "prefix", "suffix") and isinstance(body, Mapping):
            if len(body) != 1:
                return None
            ((attr, value),) = body.items()
            rows.append(FilterRow(str(dialect), str(attr), str(value)))
        else:
            return None
    return group, rows


def from_object(obj: KObject) -> TriggerForm:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    assert isinstance(meta, dict) and isinstance(spec, dict)
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    f = TriggerForm(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name", "")),
        broker=str(spec.get("broker", "")),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        ordering=annotations.pop(ORDER, ""),
        max_in_flight=annotations.pop(MAX_IN_FLIGHT, ""),
        start_from=annotations.pop(START_FROM, ""),
        other_annotations=annotations,
    )
    f.subscriber, f.subscriber_path = destination_text(spec.get("subscriber"))
    legacy = spec.get("filter")
    filters = spec.get("filters")
    if isinstance(legacy, Mapping) and isinstance(legacy.get("attributes"), Mapping):
        f.mode = "attributes"
        f.attributes = [(str(k), str(v)) for k, v in legacy["attributes"].items()]
    if filters:
        is_one_cesql = (
            isinstance(filters, list)
            and len(filters) == 1
            and isinstance(filters[0], Mapping)
            and list(filters[0]) == ["cesql"]
        )
        if is_one_cesql and f.mode == "none":
            f.mode, f.cesql = "cesql", str(filters[0]["cesql"])
        else:
            f.mode = "filters"
            shaped = _rows_of(filters)
            if shaped is None:
                f.filters_yaml = yaml.safe_dump(filters, sort_keys=False)
            else:
                f.group, f.rows = shaped
    delivery = spec.get("delivery")
    if isinstance(delivery, Mapping) and delivery:
        f.inherit = False
        f.retry = str(delivery.get("retry", "") or "")
        f.backoff_policy = str(delivery.get("backoffPolicy", "") or "")
        f.backoff_delay = str(delivery.get("backoffDelay", "") or "")
        f.timeout = str(delivery.get("timeout", "") or "")
        f.dead_letter_sink, _ = destination_text(delivery.get("deadLetterSink"))
    return f


def kept_yaml(f: TriggerForm) -> str:
    """Labels and annotations the form has no control for, carried through a hidden field so an
    edit never drops them."""
    if not f.labels and not f.other_annotations:
        return ""
    return yaml.safe_dump({"labels": f.labels, "annotations": f.other_annotations})


# -- delivery, for people -------------------------------------------------------------------------

_ISO = re.compile(
    r"P(?:(\d+(?:[.,]\d+)?)Y)?(?:(\d+(?:[.,]\d+)?)M)?(?:(\d+(?:[.,]\d+)?)W)?(?:(\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?:(\d+(?:[.,]\d+)?)H)?(?:(\d+(?:[.,]\d+)?)M)?(?:(\d+(?:[.,]\d+)?)S)?)?"
)
_UNIT_SECONDS = (365.2425 * 86400, 30.436875 * 86400, 7 * 86400, 86400, 3600, 60, 1)


def seconds(text: str) -> float | None:
    """An ISO-8601 duration in seconds for display, None if it is not one (the validator
    gives the message)."""
    m = _ISO.fullmatch(text.strip().upper()) if text else None
    if m is None or not any(m.groups()):
        return None
    return sum(
        float(n.replace(",", ".")) * u for n, u in zip(m.groups(), _UNIT_SECONDS, strict=True) if n
    )


def human(value: float | None) -> str:
    """200 ms, 1.5 s, 2 min 5 s, 1 h 2 min."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:g} ms"
    if value < 60:
        return f"{value:.3g} s"
    if value < 3600:
        m, s = divmod(round(value), 60)
        return f"{m} min" + (f" {s} s" if s else "")
    h, rest = divmod(round(value), 3600)
    return f"{h} h" + (f" {rest // 60} min" if rest // 60 else "")


MAX_BACKOFF = 3600.0  # the dispatcher caps one wait at an hour (core/delivery)
PREVIEW_WAITS = 6  # waits listed before "…"


@dataclass(frozen=True, slots=True)
class Schedule:
    waits: tuple[float, ...]  # seconds before each retry
    text: str


def retry_schedule(retry: int, policy: str, delay: float | None) -> Schedule:
    """The waits before each retry, as the dispatcher computes them: after the 0-based attempt
    n failed, linear waits n*d (the first retry is immediate), exponential d*2**n."""
    if retry <= 0:
        return Schedule((), "no retries: one attempt, then the dead-letter sink (or dropped)")
    waits: list[float] = []
    for n in range(retry):
        if not delay or policy not in ("linear", "exponential"):
            wait = 0.0
        elif policy == "linear":
            wait = delay * n
        else:
            wait = delay * (2 ** min(n, 62))
        waits.append(min(wait, MAX_BACKOFF))
    shown = ", ".join(human(w) if w else "at once" for w in waits[:PREVIEW_WAITS])
    more = " …" if len(waits) > PREVIEW_WAITS else ""
    total = sum(waits)
    return Schedule(
        tuple(waits), f"{shown}{more} — {retry} retries ≈ {human(total)} of waiting in all"
    )
