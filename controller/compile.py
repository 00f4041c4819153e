"""Broker and Trigger objects -> one contract plus Knative status: the pure core of the controller.

Both modes call `compile` with every object they know (the standalone folder watcher with the
YAML it loaded, the Kubernetes controller with its informers' caches) and get back the contract
for the data plane, a status per Broker/Trigger, and the problems found. It is level-based: the
same objects always give the same result, so a caller simply recompiles on every change.

Rules that shape the result (Knative's Broker, Trigger and delivery semantics):
- Only Brokers whose class (annotation, else config-br-defaults, else the Environment) maps to
  a channel are ours; others are left alone, status included, as Knative's class filter does.
- A Trigger's delivery is its own `spec.delivery` if set, else its Broker's, whole-object: fields
  are never merged. A Broker without `spec.delivery` gets the default from config-br-defaults.
- An object that is not Ready is not in the contract. A Trigger waits for its Broker.
- One bad object never affects another: it gets a status and problems, the rest compiles.

What this module refuses: I/O, clocks, and Kubernetes clients. Resolution of references other
than Brokers goes through the injected `Resolver`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kbroker.controller import defaults as br_defaults
from kbroker.controller import resolve, status, validate
from kbroker.core import contract

EVENTING_API = "eventing.knative.dev/v1"

validate_update = validate.validate_update

Key = tuple[str, str, str]  # (kind, namespace, name)


def _class_channels() -> Mapping[str, str]:
    return {
        "MTChannelBasedBroker": "embedded",
        "Kbroker": "embedded",
        "Kafka": "kafka",
        "KafkaNamespaced": "kafka",
    }


@dataclass(frozen=True)
class Environment:
    """What the compiler needs to know about the installation it compiles for."""

    ingress_base_url: str  # a Broker's address is f"{base}/{namespace}/{name}"
    default_broker_class: str = "MTChannelBasedBroker"
    class_channels: Mapping[str, str] = field(default_factory=_class_channels)
    default_kafka_config: tuple[tuple[str, str], ...] = ()  # e.g. bootstrap.servers from --kafka
    defaults: br_defaults.Defaults = field(default_factory=br_defaults.shipped)
    resolver: resolve.Resolver | None = None  # for refs other than Brokers (Kubernetes mode)
    default_max_in_flight: int = 100
    # Knative's `brokers.topic.template` / `triggers.consumergroup.template` (config-kafka-features)
    topic_template: str = "knative-broker-{namespace}-{name}"
    group_template: str = "knative-trigger-{namespace}-{name}"


@dataclass(frozen=True, slots=True)
class SourcedObject:
    obj: Mapping[str, Any]
    source: str  # file path, or "kubernetes"


@dataclass(frozen=True, slots=True)
class Problem:
    source: str
    kind: str
    namespace: str
    name: str
    field: str
    reason: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        parts = [self.source]
        if self.kind:
            parts.append(f"{self.kind} {self.namespace}/{self.name}")
        if self.field:
            parts.append(self.field)
        return ": ".join([*parts, self.reason])


@dataclass(frozen=True, slots=True)
class CompileResult:
    contract: contract.Contract
    statuses: dict[Key, status.ObjectStatus]
    problems: tuple[Problem, ...]


@dataclass(frozen=True, slots=True)
class _Obj:
    """One indexed object: its parts pulled out once."""

    kind: str
    namespace: str
    name: str
    source: str
    raw: Mapping[str, Any]

    @property
    def meta(self) -> Mapping[str, Any]:
        meta = self.raw.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @property
    def annotations(self) -> Mapping[str, Any]:
        ann = self.meta.get("annotations")
        return ann if isinstance(ann, Mapping) else {}

    @property
    def spec(self) -> Any:
        return self.raw.get("spec") or {}

    @property
    def generation(self) -> int:
        gen = self.meta.get("generation")
        return gen if isinstance(gen, int) and not isinstance(gen, bool) else 1

    def uid(self) -> str:
        uid = self.meta.get("uid")
        if uid:
            return str(uid)
        return str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{self.kind.lower()}/{self.namespace}/{self.name}")
        )


@dataclass(frozen=True, slots=True)
class _BrokerOutcome:
    obj: _Obj
    entry: contract.Broker | None  # None when not Ready
    status: status.ObjectStatus
    delivery: contract.DeliverySpec | None  # effective default for its Triggers; None if invalid


class _Compilation:
    """State of one `compile` call; discarded afterwards."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.defaults = env.defaults
        self.problems: list[Problem] = []
        self.brokers: dict[tuple[str, str], _Obj] = {}
        self.triggers: dict[tuple[str, str], _Obj] = {}
        self.configmaps: dict[tuple[str, str], _Obj] = {}
        self.statuses: dict[Key, status.ObjectStatus] = {}

    def problem(self, o: _Obj | None, source: str, fld: str, reason: str, severity: str) -> None:
        kind, ns, name = (o.kind, o.namespace, o.name) if o else ("", "", "")
        self.problems.append(Problem(source, kind, ns, name, fld, reason, severity))

    def report(self, o: _Obj, issues: validate.Issues) -> None:
        for i in issues.items:
            self.problem(o, o.source, i.field, i.message, i.severity)

    # --- indexing ---------------------------------------------------------------------------

    def index(self, objects: Sequence[SourcedObject]) -> None:
        tables = {
            (EVENTING_API, "Broker"): self.brokers,
            (EVENTING_API, "Trigger"): self.triggers,
            ("v1", "ConfigMap"): self.configmaps,
        }
        for so in objects:
            raw = so.obj
            if not isinstance(raw, Mapping):
                self.problem(None, so.source, "", "document is not a mapping: ignored", "error")
                continue
            api, kind = str(raw.get("apiVersion") or ""), str(raw.get("kind") or "")
            meta = raw.get("metadata")
            meta = meta if isinstance(meta, Mapping) else {}
            o = _Obj(
                kind,
                str(meta.get("namespace") or "default"),
                str(meta.get("name") or ""),
                so.source,
                raw,
            )
            table = tables.get((api, kind))
            if table is None:
                self.problem(
                    o,
                    so.source,
                    "",
                    f"unsupported kind {api}/{kind}: ignored (kbroker reads {EVENTING_API} Broker "
                    "and Trigger, and v1 ConfigMap)",
                    "warning",
                )
                continue
            bad = _bad_name(o)
            if bad:
                self.problem(o, so.source, bad[0], bad[1], "error")
                continue
            first = table.get((o.namespace, o.name))
            if first is not None:
                self.problem(
                    o,
                    so.source,
                    "",
                    f"also defined in {first.source}: this copy is ignored",
                    "error",
                )
                continue
            table[(o.namespace, o.name)] = o

    @functools.cached_property
    def configmap_data(self) -> dict[tuple[str, str], Mapping[str, Any]]:
        return {k: _data(cm) for k, cm in self.configmaps.items()}

    def load_defaults(self) -> None:
        found = [
            cm
            for (_, name), cm in sorted(self.configmaps.items())
            if name == br_defaults.CONFIGMAP_NAME
        ]
        if not found:
            return
        cm = found[0]
        data = cm.raw.get("data") or {}
        try:
            self.defaults = br_defaults.from_configmap(data if isinstance(data, Mapping) else {})
        except br_defaults.DefaultsError as exc:
            self.problem(
                cm,
                cm.source,
                f"data.{br_defaults.CONFIGMAP_KEY}",
                f"{exc}: using the built-in defaults",
                "error",
            )

    # --- brokers ----------------------------------------------------------------------------

    def owned_brokers(self) -> dict[tuple[str, str], str]:
        """(namespace, name) -> class of every Broker whose class maps to one of our channels."""
        owned: dict[tuple[str, str], str] = {}
        for key, o in sorted(self.brokers.items()):
            cls = validate.broker_class(o.raw, self.defaults, self.env.default_broker_class)
            if cls in self.env.class_channels:
                owned[key] = cls
            else:
                self.problem(
                    o,
                    o.source,
                    "",
                    f"broker class {cls!r} is not handled by kbroker: ignored",
                    "warning",
                )
        return owned

    def address(self, namespace: str, name: str) -> str:
        return f"{self.env.ingress_base_url.rstrip('/')}/{namespace}/{name}"

    def broker(self, o: _Obj, cls: str, addresses: Mapping[tuple[str, str], str]) -> _BrokerOutcome:
        spec = o.spec if isinstance(o.spec, Mapping) else {}
        channel_issues, delivery_issues = validate.Issues(), validate.Issues()
        if not isinstance(o.spec, Mapping):
            channel_issues.error("spec", "expected a mapping")
        channel = self.env.class_channels[cls]
        durability = validate.durability(o.annotations, channel_issues)
        class_defaults = self.defaults.broker_config(o.namespace, cls)

        raw_delivery, where = spec.get("delivery"), "spec.delivery"
        if raw_delivery is None and class_defaults is not None:
            raw_delivery, where = class_defaults.delivery, "spec.delivery (from config-br-defaults)"
        delivery, dls_raw = (
            validate.delivery(raw_delivery, where, delivery_issues)
            if raw_delivery is not None
            else (contract.DeliverySpec(), None)
        )
        dls_cond, dls_uri, dls_error = resolve.dead_letter(
            dls_raw, o.namespace, f"{where}.deadLetterSink", addresses, self.env.resolver
        )
        dls_issue = None
        if dls_error is not None:
            dls_issue = validate.Issue(dls_error.field, dls_error.message, status.REASON_DLS_FAILED)
            delivery_issues.items.append(dls_issue)

        config: dict[str, str] = {}
        external = o.annotations.get(validate.EXTERNAL_TOPIC_ANNOTATION)
        if channel == "kafka":
            ref = spec.get("config") or (class_defaults.config if class_defaults else None)
            config = validate.kafka_channel_config(
                ref,
                o.namespace,
                cls,
                dict(self.env.default_kafka_config),
                self.configmap_data,
                channel_issues,
            )
        elif external:
            channel_issues.warn(
                f"metadata.annotations[{validate.EXTERNAL_TOPIC_ANNOTATION}]",
                f"only used by Kafka brokers; this Broker uses the {channel} channel: ignored",
            )
            external = None
        topic = (
            str(external)
            if external
            else self.env.topic_template.format(namespace=o.namespace, name=o.name)
        )

        self.report(o, channel_issues)
        self.report(o, delivery_issues)
        address = self.address(o.namespace, o.name)
        conditions = status.with_ready(
            status.BROKER_CONDITIONS,
            {
                "TriggerChannelReady": _from_issues("TriggerChannelReady", channel_issues),
                "FilterReady": _from_issues("FilterReady", delivery_issues, skip=dls_issue),
                "IngressReady": status.true("IngressReady"),
                "Addressable": status.true("Addressable"),
                "DeadLetterSinkResolved": dls_cond,
                "EventPoliciesReady": status.true(
                    "EventPoliciesReady", status.REASON_OIDC_DISABLED_BROKER
                ),
            },
        )
        annotations = {"kbroker.dev/channel": channel, "default.topic": topic}
        annotations.update(
            {k: v for k, v in config.items() if not k.startswith("default.topic.config.")}
        )
        st = status.ObjectStatus(
            kind="Broker",
            namespace=o.namespace,
            name=o.name,
            generation=o.generation,
            conditions=conditions,
            address_url=address,
            dead_letter_sink_uri=dls_uri,
            annotations=tuple(sorted(annotations.items())),
        )
        entry = None
        if st.ready:
            entry = contract.Broker(
                namespace=o.namespace,
                name=o.name,
                uid=o.uid(),
                address=address,
                channel=channel,
                channel_config=tuple(sorted(config.items())),
                topic=topic,
                external_topic=bool(external),
                default_durability=durability,
                generation=o.generation,
            )
        ok_delivery = (
            None
            if delivery_issues.errors
            else dataclasses.replace(delivery, dead_letter_uri=dls_uri)
        )
        return _BrokerOutcome(o, entry, st, ok_delivery)


# Kubernetes object names (DNS-1123 subdomain) and namespaces (DNS-1123 label). The API server
# enforces them; standalone must too, because names end up in URL paths and Kafka topic names.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _bad_name(o: _Obj) -> tuple[str, str] | None:
    if not o.name:
        return "metadata.name", "is required"
    if not _NAME.fullmatch(o.name):
        return "metadata.name", "must be lowercase alphanumerics, '-' or '.' (RFC 1123)"
    if not _NAMESPACE.fullmatch(o.namespace):
        return "metadata.namespace", "must be lowercase alphanumerics or '-' (RFC 1123 label)"
    return None


def _data(cm: _Obj) -> Mapping[str, Any]:
    data = cm.raw.get("data")
    return data if isinstance(data, Mapping) else {}


def _from_issues(
    type_: str, issues: validate.Issues, skip: validate.Issue | None = None
) -> status.Condition:
    errors = [i for i in issues.errors if i is not skip]
    if not errors:
        return status.true(type_)
    return status.false(type_, errors[0].reason, "; ".join(str(i) for i in errors))


class _TriggerCompiler:
    """Compiles one Trigger against the already compiled Brokers."""

    def __init__(self, c: _Compilation, addresses: Mapping[tuple[str, str], str]) -> None:
        self.c = c
        self.addresses = addresses

    def broker_name(self, o: _Obj, spec: Mapping[str, Any], issues: validate.Issues) -> str:
        name, ref = spec.get("broker"), spec.get("brokerRef")
        if name and ref:
            issues.error("spec", "expected exactly one, got both: spec.broker, spec.brokerRef")
        if not name and isinstance(ref, Mapping):
            if ref.get("namespace") not in (None, "", o.namespace):
                issues.error(
                    "spec.brokerRef.namespace", "cross-namespace Brokers are not supported"
                )
            name = ref.get("name")
        if not name:
            issues.error("spec.broker", "missing field(s): spec.broker")
            return ""
        return str(name)

    def compile(
        self, o: _Obj, brokers: Mapping[tuple[str, str], _BrokerOutcome]
    ) -> contract.Trigger | None:
        c = self.c
        spec = o.spec if isinstance(o.spec, Mapping) else {}
        broker_issues, issues = validate.Issues(), validate.Issues()
        if not isinstance(o.spec, Mapping):
            issues.error("spec", "expected a mapping")
        broker = self.broker_name(o, spec, broker_issues)
        if broker and (o.namespace, broker) in c.brokers and (o.namespace, broker) not in brokers:
            c.problem(
                o,
                o.source,
                "spec.broker",
                f'Broker "{broker}" is not a kbroker class: ignored',
                "warning",
            )
            return None
        outcome = brokers.get((o.namespace, broker))

        # Filters: a non-empty `filters` wins; an empty one leaves the legacy filter in force.
        legacy = validate.legacy_filter(spec.get("filter"), issues)
        new = validate.filters(spec.get("filters"), issues)
        filters = new if new else legacy

        subscriber_uri: str | None = None
        try:
            subscriber_uri = resolve.resolve_destination(
                spec.get("subscriber"),
                o.namespace,
                "spec.subscriber",
                self.addresses,
                c.env.resolver,
            )
            subscriber = status.true("SubscriberResolved")
        except resolve.DestinationError as exc:
            subscriber = status.false(
                "SubscriberResolved", status.REASON_SUBSCRIBER_FAILED, str(exc)
            )
            c.problem(o, o.source, exc.field, exc.message, "error")

        delivery, dls = self.delivery(o, spec, outcome, issues)
        order = validate.order(o.annotations, issues)
        max_in_flight = validate.max_in_flight(o.annotations, c.env.default_max_in_flight, issues)
        start_from = validate.start_from(o.annotations, issues)
        validate.dependency(o.annotations, o.namespace, issues)
        c.report(o, broker_issues)
        c.report(o, issues)

        if broker_issues.errors:
            broker_cond = _from_issues("BrokerReady", broker_issues)
        elif outcome is None:
            broker_cond = status.false(
                "BrokerReady", status.REASON_BROKER_MISSING, f'Broker "{broker}" does not exist'
            )
            c.problem(
                o,
                o.source,
                "spec.broker",
                f'Broker "{broker}" does not exist (the Trigger waits for it)',
                "warning",
            )
        else:
            top = outcome.status.conditions[0]
            broker_cond = dataclasses.replace(top, type="BrokerReady")
        consumer_group = c.env.group_template.format(namespace=o.namespace, name=o.name)
        st = status.ObjectStatus(
            kind="Trigger",
            namespace=o.namespace,
            name=o.name,
            generation=o.generation,
            conditions=status.with_ready(
                status.TRIGGER_CONDITIONS,
                {
                    "BrokerReady": broker_cond,
                    "SubscriberResolved": subscriber,
                    "DeadLetterSinkResolved": dls,
                    "SubscriptionReady": _from_issues("SubscriptionReady", issues),
                    "DependencyReady": status.true("DependencyReady"),
                    "OIDCIdentityCreated": status.true(
                        "OIDCIdentityCreated", status.REASON_OIDC_DISABLED_TRIGGER
                    ),
                },
            ),
            subscriber_uri=subscriber_uri,
            dead_letter_sink_uri=delivery.dead_letter_uri if delivery else None,
            annotations=(("group.id", consumer_group),),
            warnings=tuple(str(i) for i in issues.items if i.severity == "warning"),
        )
        c.statuses[("Trigger", o.namespace, o.name)] = st
        if not st.ready or outcome is None or delivery is None or subscriber_uri is None:
            return None
        return contract.Trigger(
            namespace=o.namespace,
            name=o.name,
            uid=contract.TriggerUid(o.uid()),
            broker=broker,
            subscriber_uri=subscriber_uri,
            filters=filters,
            delivery=delivery,
            order=order,
            max_in_flight=max_in_flight,
            start_from=start_from,
            consumer_group=consumer_group,
            generation=o.generation,
        )

    def delivery(
        self,
        o: _Obj,
        spec: Mapping[str, Any],
        outcome: _BrokerOutcome | None,
        issues: validate.Issues,
    ) -> tuple[contract.DeliverySpec | None, status.Condition]:
        """The effective delivery (own, else the Broker's, whole-object) and its DLS condition."""
        raw = spec.get("delivery")
        if raw is not None:
            own, dls_raw = validate.delivery(raw, "spec.delivery", issues)
            cond, uri, issue = resolve.dead_letter(
                dls_raw,
                o.namespace,
                "spec.delivery.deadLetterSink",
                self.addresses,
                self.c.env.resolver,
            )
            if issue is not None:
                self.c.problem(o, o.source, issue.field, issue.message, "error")
                return None, cond
            return dataclasses.replace(own, dead_letter_uri=uri), cond
        if outcome is None:
            return None, status.unknown(
                "DeadLetterSinkResolved", "BrokerNotReady", "waiting for the Broker's delivery"
            )
        broker_dls = outcome.status.condition("DeadLetterSinkResolved")
        if outcome.delivery is None:
            if broker_dls is not None and broker_dls.status == status.FALSE:
                return None, broker_dls
            return None, status.unknown(
                "DeadLetterSinkResolved", "BrokerNotReady", "the Broker's delivery is invalid"
            )
        if outcome.delivery.dead_letter_uri is None:
            return outcome.delivery, status.true(
                "DeadLetterSinkResolved",
                status.REASON_DLS_NOT_CONFIGURED,
                status.MESSAGE_DLS_NOT_CONFIGURED,
            )
        return outcome.delivery, status.true("DeadLetterSinkResolved")


def compile(
    objects: Sequence[SourcedObject], env: Environment, previous: contract.Contract | None = None
) -> CompileResult:
    """The contract, statuses and problems for this set of objects (see the module docstring)."""
    c = _Compilation(env)
    c.index(objects)
    c.load_defaults()
    owned = c.owned_brokers()
    addresses = {key: c.address(*key) for key in owned}
    outcomes: dict[tuple[str, str], _BrokerOutcome] = {}
    for key, cls in owned.items():
        outcome = c.broker(c.brokers[key], cls, addresses)
        outcomes[key] = outcome
        c.statuses[("Broker", *key)] = outcome.status
    tc = _TriggerCompiler(c, addresses)
    triggers = [
        t for key, o in sorted(c.triggers.items()) if (t := tc.compile(o, outcomes)) is not None
    ]
    content = contract.Contract(
        generation=0,
        brokers=tuple(o.entry for _, o in sorted(outcomes.items()) if o.entry is not None),
        triggers=tuple(triggers),
    )
    if previous is None:
        generation = 1
    elif dataclasses.replace(previous, generation=0) == content:
        generation = previous.generation
    else:
        generation = previous.generation + 1
    return CompileResult(
        contract=dataclasses.replace(content, generation=generation),
        statuses=dict(sorted(c.statuses.items())),
        problems=tuple(
            sorted(
                c.problems, key=lambda p: (p.source, p.kind, p.namespace, p.name, p.field, p.reason)
            )
        ),
    )
