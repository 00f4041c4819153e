"""What one compilation knows: the installation (`Environment`), the objects indexed by kind and
name, the problems found so far, and the pieces every kind's compiler shares.

`compiler.compile` builds one `Compilation` per call and hands it to `brokers` and `triggers`; it
lives in its own module so those two can use it without importing the entry point that calls them.

What this module refuses: I/O, clocks, Kubernetes clients, and any rule of one kind's own (those
live in `brokers` and `triggers`).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kbroker.controller import defaults as br_defaults
from kbroker.controller import resolve, status, validate

EVENTING_API = "eventing.knative.dev/v1"

Key = tuple[str, str, str]  # (kind, namespace, name)


def _class_channels() -> Mapping[str, str]:
    return {
        "MTChannelBasedBroker": "embedded",
        "Kbroker": "embedded",
        "Kafka": "kafka",
        "KafkaNamespaced": "kafka",
        "RabbitMQBroker": "rabbitmq",
    }


@dataclass(frozen=True)
class Environment:
    """What the compiler needs to know about the installation it compiles for."""

    ingress_base_url: str  # a Broker's address is f"{base}/{namespace}/{name}"
    ingress_ca_certs: str | None = None  # PEM producers trust the https address with (CACerts)
    default_broker_class: str = "MTChannelBasedBroker"
    class_channels: Mapping[str, str] = field(default_factory=_class_channels)
    # Channel kind -> backend, overriding the kind's own (cluster mode under --kafka stores
    # InMemoryChannels in Kafka: ingress and filter pods cannot share an embedded log).
    channel_backends: Mapping[str, str] = field(default_factory=dict)
    default_kafka_config: tuple[tuple[str, str], ...] = ()  # e.g. bootstrap.servers from --kafka
    nats_url: str | None = None  # the NATS server NatsJetStreamChannel brokers use (--nats)
    default_rabbitmq_url: str = ""  # RabbitMQBroker's server when its config names none
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
class Obj:
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


class Compilation:
    """State of one `compiler.compile` call; discarded afterwards."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.defaults = env.defaults
        self.problems: list[Problem] = []
        self.brokers: dict[tuple[str, str], Obj] = {}
        self.triggers: dict[tuple[str, str], Obj] = {}
        self.configmaps: dict[tuple[str, str], Obj] = {}
        self.eventpolicies: dict[tuple[str, str], Obj] = {}
        self.rabbitmq_configs: dict[tuple[str, str], Obj] = {}  # RabbitmqBrokerConfig
        self.pingsources: dict[tuple[str, str], Obj] = {}
        # Channels by kind (a generic Channel and its backing channel share a name), their
        # Subscriptions, and the flows built of both (see `flows`).
        self.channels: dict[str, dict[tuple[str, str], Obj]] = {
            kind: {}
            for kind in (
                "Channel",
                "InMemoryChannel",
                "KafkaChannel",
                "NatsJetStreamChannel",
            )
        }
        self.subscriptions: dict[tuple[str, str], Obj] = {}
        self.sequences: dict[tuple[str, str], Obj] = {}
        self.parallels: dict[tuple[str, str], Obj] = {}
        # Kubernetes-only kinds: indexed so standalone reports them as such (controller/kube_only).
        self.apiserversources: dict[tuple[str, str], Obj] = {}
        self.sinkbindings: dict[tuple[str, str], Obj] = {}
        self.statuses: dict[Key, status.ObjectStatus] = {}

    def problem(self, o: Obj | None, source: str, fld: str, reason: str, severity: str) -> None:
        kind, ns, name = (o.kind, o.namespace, o.name) if o else ("", "", "")
        self.problems.append(Problem(source, kind, ns, name, fld, reason, severity))

    def report(self, o: Obj, issues: validate.Issues) -> None:
        for i in issues.items:
            self.problem(o, o.source, i.field, i.message, i.severity)

    # --- indexing ---------------------------------------------------------------------------

    def index(self, objects: Sequence[SourcedObject]) -> None:
        tables = {
            (EVENTING_API, "Broker"): self.brokers,
            (EVENTING_API, "Trigger"): self.triggers,
            ("v1", "ConfigMap"): self.configmaps,
            ("eventing.knative.dev/v1alpha1", "EventPolicy"): self.eventpolicies,
            ("eventing.knative.dev/v1alpha1", "RabbitmqBrokerConfig"): self.rabbitmq_configs,
            ("sources.knative.dev/v1", "PingSource"): self.pingsources,
            ("messaging.knative.dev/v1", "Channel"): self.channels["Channel"],
            ("messaging.knative.dev/v1", "InMemoryChannel"): self.channels["InMemoryChannel"],
            ("messaging.knative.dev/v1beta1", "KafkaChannel"): self.channels["KafkaChannel"],
            ("messaging.knative.dev/v1alpha1", "NatsJetStreamChannel"): self.channels[
                "NatsJetStreamChannel"
            ],
            ("messaging.knative.dev/v1", "Subscription"): self.subscriptions,
            ("flows.knative.dev/v1", "Sequence"): self.sequences,
            ("flows.knative.dev/v1", "Parallel"): self.parallels,
            ("sources.knative.dev/v1", "ApiServerSource"): self.apiserversources,
            ("sources.knative.dev/v1", "SinkBinding"): self.sinkbindings,
        }
        for so in objects:
            raw = so.obj
            if not isinstance(raw, Mapping):
                self.problem(None, so.source, "", "document is not a mapping: ignored", "error")
                continue
            api, kind = str(raw.get("apiVersion") or ""), str(raw.get("kind") or "")
            meta = raw.get("metadata")
            meta = meta if isinstance(meta, Mapping) else {}
            o = Obj(
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
                    "and Trigger, eventing.knative.dev/v1alpha1 EventPolicy, "
                    "sources.knative.dev/v1 PingSource, messaging.knative.dev channels and "
                    "Subscription, flows.knative.dev/v1 Sequence and Parallel, and v1 ConfigMap)",
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

    def address(self, namespace: str, name: str) -> str:
        return f"{self.env.ingress_base_url.rstrip('/')}/{namespace}/{name}"


# Kubernetes object names (DNS-1123 subdomain) and namespaces (DNS-1123 label). The API server
# enforces them; standalone must too, because names end up in URL paths and Kafka topic names.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _bad_name(o: Obj) -> tuple[str, str] | None:
    if not o.name:
        return "metadata.name", "is required"
    if not _NAME.fullmatch(o.name):
        return "metadata.name", "must be lowercase alphanumerics, '-' or '.' (RFC 1123)"
    if not _NAMESPACE.fullmatch(o.namespace):
        return "metadata.namespace", "must be lowercase alphanumerics or '-' (RFC 1123 label)"
    return None


def _data(cm: Obj) -> Mapping[str, Any]:
    data = cm.raw.get("data")
    return data if isinstance(data, Mapping) else {}


def from_issues(
    type_: str, issues: validate.Issues, skip: validate.Issue | None = None
) -> status.Condition:
    errors = [i for i in issues.errors if i is not skip]
    if not errors:
        return status.true(type_)
    return status.false(type_, errors[0].reason, "; ".join(str(i) for i in errors))
