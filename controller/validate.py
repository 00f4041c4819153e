"""Validation and parsing of Broker/Trigger fields: Knative's webhook, run at compile time.

Knative rejects a bad object at admission; a folder of YAML has no admission step, so the
compiler parses every field here, collects every problem with the field it sits in (`Issues`),
and keeps the object out of the contract. Messages follow the webhook's wording where there is
one ("multiple dialects found, filters can have only one dialect set", "Immutable fields
changed: spec.broker") so users can search for them.

What this module refuses: partial acceptance. A filter with one bad child is a bad filter (we
fail closed where Knative's MT data plane would skip the child and match more than asked).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kbroker.controller import defaults as br_defaults
from kbroker.controller import durations
from kbroker.core import cesql, contract

CLASS_ANNOTATION = "eventing.knative.dev/broker.class"
EXTERNAL_TOPIC_ANNOTATION = "kafka.eventing.knative.dev/external.topic"
ORDER_ANNOTATION = "kafka.eventing.knative.dev/delivery.order"
DEPENDENCY_ANNOTATION = "knative.dev/dependency"
MAX_IN_FLIGHT_ANNOTATION = "kbroker.dev/max-in-flight"
START_FROM_ANNOTATION = "kbroker.dev/start-from"
DURABILITY_ANNOTATION = "kbroker.dev/durability"

# Knative's webhook: lowercase alphanumeric, starting with a letter (CloudEvents attribute names).
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9]*")
_DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")
_DELIVERY_FIELDS = (
    "deadLetterSink",
    "retry",
    "backoffPolicy",
    "backoffDelay",
    "timeout",
    "retryAfterMax",
    "format",
)

REASON_INVALID = "InvalidSpec"
REASON_FILTER = "InvalidFilter"
REASON_DELIVERY = "InvalidDelivery"
REASON_ANNOTATION = "InvalidAnnotation"
REASON_CONFIG = "InvalidConfig"


@dataclass(frozen=True, slots=True)
class Issue:
    field: str
    message: str
    reason: str = REASON_INVALID
    severity: str = "error"  # "error" keeps the object out; "warning" is only reported

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(slots=True)
class Issues:
    """Accumulates what is wrong with one object, so all of it is reported at once."""

    items: list[Issue] = field(default_factory=list)

    def error(self, field: str, message: str, reason: str = REASON_INVALID) -> None:
        self.items.append(Issue(field, message, reason))

    def warn(self, field: str, message: str) -> None:
        self.items.append(Issue(field, message, "", "warning"))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.items if i.severity == "error"]


def is_attribute_name(name: object) -> bool:
    return isinstance(name, str) and _ATTRIBUTE_NAME.fullmatch(name) is not None


def _attributes(raw: Any, where: str, issues: Issues) -> tuple[tuple[str, str], ...]:
    """A string->string map of CloudEvents attribute names, sorted for a stable contract."""
    if not isinstance(raw, Mapping):
        issues.error(where, "expected a map of attribute name to value", REASON_FILTER)
        return ()
    out: list[tuple[str, str]] = []
    for name, value in raw.items():
        if not is_attribute_name(name):
            issues.error(
                where,
                f"invalid key name {name!r}: attribute names must start with a lowercase letter "
                "and contain only lowercase letters and digits",
                REASON_FILTER,
            )
            continue
        if not isinstance(value, str):
            issues.error(f"{where}.{name}", "value must be a string (quote it)", REASON_FILTER)
            continue
        out.append((name, value))
    return tuple(sorted(out))


def legacy_filter(raw: Any, issues: Issues) -> tuple[contract.FilterSpec, ...]:
    """`spec.filter` (`{attributes: {...}}`); an empty or absent one filters nothing."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        issues.error("spec.filter", "expected a mapping with `attributes`", REASON_FILTER)
        return ()
    attrs = raw.get("attributes")
    if not attrs:
        return ()
    pairs = _attributes(attrs, "spec.filter.attributes", issues)
    return (contract.FilterSpec("attributes", attributes=pairs),) if pairs else ()


def filters(raw: Any, issues: Issues) -> tuple[contract.FilterSpec, ...]:
    """`spec.filters`: a list of one-dialect filters, implicitly ANDed."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        issues.error("spec.filters", "expected a list of filters", REASON_FILTER)
        return ()
    return tuple(_filter(f, f"spec.filters[{i}]", issues) for i, f in enumerate(raw))


def _is_set(dialect: str, value: Any) -> bool:
    # Go's zero values: an empty map/list/string is "not set"; `not: {}` is a non-nil pointer.
    if dialect == "not":
        return value is not None
    return value is not None and value != {} and value != [] and value != ""


def _filter(raw: Any, where: str, issues: Issues) -> contract.FilterSpec:
    noop = contract.FilterSpec("all")  # `{}` sets no dialect and passes everything, as in Knative
    if not isinstance(raw, Mapping):
        issues.error(where, "expected a mapping with one dialect", REASON_FILTER)
        return noop
    unknown = sorted(str(k) for k in raw if k not in _DIALECTS)
    if unknown:
        issues.error(
            where,
            f"unknown dialect(s) {', '.join(unknown)}; expected one of {', '.join(_DIALECTS)}",
            REASON_FILTER,
        )
    chosen = [d for d in _DIALECTS if _is_set(d, raw.get(d))]
    if len(chosen) > 1:
        issues.error(
            where, "multiple dialects found, filters can have only one dialect set", REASON_FILTER
        )
    if not chosen:
        return noop
    dialect = chosen[0]
    value = raw[dialect]
    at = f"{where}.{dialect}"
    if dialect in ("exact", "prefix", "suffix"):
        return contract.FilterSpec(dialect, attributes=_attributes(value, at, issues))
    if dialect in ("all", "any"):
        if not isinstance(value, list):
            issues.error(at, "expected a list of filters", REASON_FILTER)
            return noop
        children = tuple(_filter(c, f"{at}[{i}]", issues) for i, c in enumerate(value))
        return contract.FilterSpec(dialect, children=children)
    if dialect == "not":
        return contract.FilterSpec("not", children=(_filter(value, at, issues),))
    if not isinstance(value, str):
        issues.error(at, "expected a CESQL expression string", REASON_FILTER)
        return noop
    _check_cesql(value, at, issues)
    return contract.FilterSpec("cesql", expression=value)


def _check_cesql(expression: str, where: str, issues: Issues) -> None:
    try:
        cesql.parse(expression)
    except cesql.ParseError as exc:
        issues.error(where, str(exc), REASON_FILTER)
        return
    for text in cesql.warnings(expression):
        issues.warn(where, str(text))


def delivery(raw: Any, where: str, issues: Issues) -> tuple[contract.DeliverySpec, Any]:
    """A DeliverySpec in seconds, without its dead-letter sink, and the raw sink to resolve."""
    if not isinstance(raw, Mapping):
        issues.error(where, "expected a mapping", REASON_DELIVERY)
        return contract.DeliverySpec(), None
    for key in sorted(str(k) for k in raw if k not in _DELIVERY_FIELDS):
        issues.error(f"{where}.{key}", "unknown field", REASON_DELIVERY)
    retry = raw.get("retry")
    if retry is None:
        retry = 0
    elif isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        issues.error(f"{where}.retry", f"must be an integer >= 0, got {retry!r}", REASON_DELIVERY)
        retry = 0
    policy = None
    raw_policy = raw.get("backoffPolicy")
    if raw_policy is not None:
        try:
            policy = contract.BackoffPolicy(raw_policy)
        except ValueError:
            issues.error(
                f"{where}.backoffPolicy",
                f"must be linear or exponential, got {raw_policy!r}",
                REASON_DELIVERY,
            )
    fmt = raw.get("format")
    if fmt is not None and fmt not in ("json", "binary"):
        issues.error(f"{where}.format", f"must be json or binary, got {fmt!r}", REASON_DELIVERY)
        fmt = None
    spec = contract.DeliverySpec(
        retry=retry,
        backoff_policy=policy,
        backoff_delay=_duration(raw, "backoffDelay", where, issues, positive=False),
        timeout=_duration(raw, "timeout", where, issues, positive=True),
        retry_after_max=_duration(raw, "retryAfterMax", where, issues, positive=False),
        format=fmt,
    )
    return spec, raw.get("deadLetterSink")


def _duration(
    raw: Mapping[str, Any], key: str, where: str, issues: Issues, *, positive: bool
) -> float | None:
    text = raw.get(key)
    if text is None:
        return None
    try:
        seconds = durations.parse(text)
    except durations.DurationError as exc:
        issues.error(f"{where}.{key}", str(exc), REASON_DELIVERY)
        return None
    if positive and seconds <= 0:
        issues.error(f"{where}.{key}", f"must be greater than zero, got {text!r}", REASON_DELIVERY)
        return None
    return seconds


def kafka_config(data: Mapping[str, Any], where: str, issues: Issues) -> dict[str, str]:
    """The keys of Knative's `kafka-broker-config` that a channel uses, as strings."""
    out: dict[str, str] = {}
    for key, value in data.items():
        k = str(key)
        if k == "bootstrap.servers" or k.startswith("default.topic.config."):
            out[k] = str(value).strip()
        elif k in ("default.topic.partitions", "default.topic.replication.factor"):
            text = str(value).strip()
            if not text.isdigit() or int(text) < 1:
                issues.error(
                    f"{where}.{k}", f"must be a positive integer, got {value!r}", REASON_CONFIG
                )
                continue
            out[k] = text
        elif k == "auth.secret.ref.name":
            issues.warn(
                f"{where}.{k}", "Kafka authentication secrets are not supported yet: ignored"
            )
    return out


KAFKA_CLASSES = frozenset({"Kafka", "KafkaNamespaced"})


def kafka_channel_config(
    ref: Any,
    namespace: str,
    broker_class: str,
    base: dict[str, str],
    configmaps: Mapping[tuple[str, str], Mapping[str, Any]],
    issues: Issues,
) -> dict[str, str]:
    """bootstrap.servers & co: `base` (from --kafka) overridden by the referenced ConfigMap.

    A missing ConfigMap is an error only for the Kafka classes: for another class mapped to
    Kafka (MTChannelBasedBroker under `kbroker run --kafka`) spec.config is Knative's channel
    template, which means nothing to us.
    """
    config = dict(base)
    strict = broker_class in KAFKA_CLASSES
    if not ref:
        pass
    elif not isinstance(ref, Mapping) or ref.get("kind") != "ConfigMap" or not ref.get("name"):
        if strict:
            issues.error("spec.config", "must reference a v1 ConfigMap by name", REASON_CONFIG)
    else:
        ns, name = str(ref.get("namespace") or namespace), str(ref["name"])
        data = configmaps.get((ns, name))
        if broker_class == "KafkaNamespaced" and ns != namespace:
            issues.error(
                "spec.config.namespace",
                "KafkaNamespaced brokers need their ConfigMap in their own namespace",
                REASON_CONFIG,
            )
        elif data is not None:
            config.update(kafka_config(data, f"spec.config (ConfigMap {ns}/{name})", issues))
        elif strict:
            issues.error("spec.config", f"ConfigMap {ns}/{name} not found", REASON_CONFIG)
    if not config.get("bootstrap.servers"):
        issues.error(
            "spec.config",
            "no bootstrap.servers: set it in the Broker ConfigMap or run kbroker with --kafka",
            REASON_CONFIG,
        )
    return config


def order(annotations: Mapping[str, Any], issues: Issues) -> contract.DeliveryOrder:
    raw = annotations.get(ORDER_ANNOTATION)
    if raw is None:
        return contract.DeliveryOrder.UNORDERED
    try:
        return contract.DeliveryOrder(str(raw).strip().lower())
    except ValueError:
        issues.error(
            _ann(ORDER_ANNOTATION), f"must be ordered or unordered, got {raw!r}", REASON_ANNOTATION
        )
        return contract.DeliveryOrder.UNORDERED


def max_in_flight(annotations: Mapping[str, Any], default: int, issues: Issues) -> int:
    raw = annotations.get(MAX_IN_FLIGHT_ANNOTATION)
    if raw is None:
        return default
    text = str(raw).strip()
    if not text.isdigit() or int(text) < 1:
        issues.error(
            _ann(MAX_IN_FLIGHT_ANNOTATION),
            f"must be a positive integer, got {raw!r}",
            REASON_ANNOTATION,
        )
        return default
    return int(text)


def start_from(annotations: Mapping[str, Any], issues: Issues) -> contract.StartFrom:
    raw = annotations.get(START_FROM_ANNOTATION)
    if raw is None:
        return contract.StartFrom.LATEST
    try:
        return contract.StartFrom(str(raw).strip().lower())
    except ValueError:
        issues.error(
            _ann(START_FROM_ANNOTATION),
            f"must be earliest or latest, got {raw!r}",
            REASON_ANNOTATION,
        )
        return contract.StartFrom.LATEST


def durability(annotations: Mapping[str, Any], issues: Issues) -> contract.Durability:
    raw = annotations.get(DURABILITY_ANNOTATION)
    if raw is None:
        return contract.Durability.ALL
    try:
        return contract.Durability(str(raw).strip().lower())
    except ValueError:
        issues.error(
            _ann(DURABILITY_ANNOTATION),
            f"must be none, leader or all, got {raw!r}",
            REASON_ANNOTATION,
        )
        return contract.Durability.ALL


def dependency(annotations: Mapping[str, Any], namespace: str, issues: Issues) -> None:
    """`knative.dev/dependency`: a JSON ObjectReference (kind, name, apiVersion), same namespace."""
    raw = annotations.get(DEPENDENCY_ANNOTATION)
    if raw is None:
        return
    where = _ann(DEPENDENCY_ANNOTATION)
    try:
        ref = json.loads(str(raw))
    except ValueError:
        issues.error(where, "must be a JSON object reference", REASON_ANNOTATION)
        return
    if not isinstance(ref, dict):
        issues.error(where, "must be a JSON object reference", REASON_ANNOTATION)
        return
    missing = [k for k in ("kind", "name", "apiVersion") if not ref.get(k)]
    if missing:
        issues.error(where, "missing field(s): " + ", ".join(missing), REASON_ANNOTATION)
    if ref.get("namespace") not in (None, "", namespace):
        issues.error(
            where, "namespace must be empty or equal to the Trigger's namespace", REASON_ANNOTATION
        )


def _ann(name: str) -> str:
    return f"metadata.annotations[{name}]"


def broker_class(
    obj: Mapping[str, Any], defaults: br_defaults.Defaults | None, fallback: str
) -> str:
    """The class annotation, else the namespace/cluster default, else `fallback`."""
    meta = obj.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(CLASS_ANNOTATION)
    if value:
        return str(value)
    ns = str(meta.get("namespace") or "default")
    return (defaults.broker_class(ns) if defaults else None) or fallback


def _config_ref(obj: Mapping[str, Any]) -> Any:
    ref = (obj.get("spec") or {}).get("config")
    if isinstance(ref, Mapping) and not ref.get("namespace"):
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        return {**ref, "namespace": ns}
    return ref


def validate_update(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    defaults: br_defaults.Defaults | None = None,
    default_class: str = "MTChannelBasedBroker",
) -> list[str]:
    """Why `new` may not replace `old` (Knative's immutable fields); empty when it may."""
    kind = new.get("kind")
    changed: list[str] = []
    if kind == "Trigger":
        if (old.get("spec") or {}).get("broker") != (new.get("spec") or {}).get("broker"):
            changed.append("spec.broker")
    elif kind == "Broker":
        if broker_class(old, defaults, default_class) != broker_class(new, defaults, default_class):
            changed.append(f"metadata.annotations[{CLASS_ANNOTATION}]")
        if _config_ref(old) != _config_ref(new):
            changed.append("spec.config")
    return [f"Immutable fields changed: {f}" for f in changed]
