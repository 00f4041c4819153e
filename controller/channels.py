"""Channels (messaging.knative.dev) -> contract entries of kind CHANNEL and Knative status.

A channel is a log with an address, which is what a Broker's entry already describes, so a channel
compiles to a `contract.Broker` with `kind=CHANNEL`: ingress stores what is POSTed to
`<ingress>/channels/<namespace>/<name>`, and each Subscription reads it like a Trigger would.
The kinds and the backends they map to:

    InMemoryChannel        messaging.knative.dev/v1        embedded (kbroker's durable log)
    KafkaChannel           messaging.knative.dev/v1beta1   kafka
    NatsJetStreamChannel   messaging.knative.dev/v1alpha1  nats
    Channel                messaging.knative.dev/v1        the kind its spec.channelTemplate names

A generic `Channel` is backed by a channel of its template's kind with the same name, as in
Knative; here the backing channel is the same contract entry, and both objects get a status.
Unlike Knative's InMemoryChannel, the embedded log is durable and the channel's ingress answers
202 once the event is stored, not after every subscriber took it.

What this module refuses: `spec.subscribers` written by hand (Subscriptions fill them in), and
channel kinds with no backend in this process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from kbroker.controller import channel_template, resolve, status, validate
from kbroker.controller.compilation import Compilation, Obj, from_issues
from kbroker.core import contract

MESSAGING_GROUP = "messaging.knative.dev"
CHANNEL_API = "messaging.knative.dev/v1"
GENERIC = "Channel"
BACKING_KINDS = channel_template.KINDS  # kind -> (apiVersion, backend)
KINDS = frozenset({GENERIC, *BACKING_KINDS})
DEFAULT_TEMPLATE: Mapping[str, Any] = {"apiVersion": CHANNEL_API, "kind": "InMemoryChannel"}
DEFAULT_CH_CONFIGMAP = "default-ch-webhook"  # Knative's channel defaults (key default-ch-config)
DEFAULT_CH_KEY = "default-ch-config"

# Condition types, in the order a failure is reported.
CHANNEL_CONDITIONS = (
    "DispatcherReady",
    "Addressable",
    "DeadLetterSinkResolved",
    "EventPoliciesReady",
)
GENERIC_CONDITIONS = (
    "BackingChannelReady",
    "Addressable",
    "DeadLetterSinkResolved",
    "EventPoliciesReady",
)
REASON_BACKING = "BackingChannelFailed"


@dataclass(frozen=True, slots=True)
class ChannelOutcome:
    obj: Obj
    entry: contract.Broker | None  # None when not Ready
    status: status.ObjectStatus
    delivery: contract.DeliverySpec | None  # the channel's spec.delivery (None: none or invalid)
    has_delivery: bool  # spec.delivery is set (its subscriptions inherit it)


def address(c: Compilation, namespace: str, name: str) -> str:
    """A channel's URL: a pure function of the ingress URL and its name, like a Broker's."""
    base = c.env.ingress_base_url.rstrip("/")
    return f"{base}/{contract.CHANNEL_PATH}/{namespace}/{name}"


def is_channel_ref(ref: Mapping[str, Any]) -> bool:
    api = str(ref.get("apiVersion") or "")
    return api.split("/")[0] == MESSAGING_GROUP and ref.get("kind") in KINDS


def default_template(c: Compilation, namespace: str) -> Mapping[str, Any]:
    """Knative's `default-ch-webhook` ConfigMap (a namespace entry wins over the cluster default)
    when the configuration has one; InMemoryChannel otherwise."""
    for (_, name), data in sorted(c.configmap_data.items()):
        if name != DEFAULT_CH_CONFIGMAP or not data.get(DEFAULT_CH_KEY):
            continue
        try:
            conf = yaml.safe_load(str(data[DEFAULT_CH_KEY]))
        except yaml.YAMLError:  # a bad defaults ConfigMap must not take every channel down
            return DEFAULT_TEMPLATE
        if not isinstance(conf, Mapping):
            return DEFAULT_TEMPLATE
        per_ns = conf.get("namespaceDefaults")
        if isinstance(per_ns, Mapping) and isinstance(per_ns.get(namespace), Mapping):
            return dict(per_ns[namespace])
        if isinstance(conf.get("clusterDefault"), Mapping):
            return dict(conf["clusterDefault"])
    return DEFAULT_TEMPLATE


def template_backend(
    template: Any, where: str, issues: validate.Issues
) -> tuple[str, Mapping[str, Any], str]:
    """(backend, template spec, kind) of a channelTemplate; errors land in `issues`."""
    if not isinstance(template, Mapping):
        issues.error(where, "missing field(s): " + where, REASON_BACKING)
        return "", {}, ""
    kind, api = str(template.get("kind") or ""), str(template.get("apiVersion") or "")
    for fld, value in (("apiVersion", api), ("kind", kind)):
        if not value:
            issues.error(f"{where}.{fld}", f"missing field(s): {where}.{fld}", REASON_BACKING)
    known = BACKING_KINDS.get(kind)
    if not kind or not api:
        return "", {}, kind
    if known is None or api.split("/")[0] != known[0].split("/")[0]:
        issues.error(
            where,
            f"channel kind {kind} ({api}) is not supported; "
            f"supported: {channel_template.SUPPORTED}",
            REASON_BACKING,
        )
        return "", {}, kind
    spec = template.get("spec")
    return known[1], spec if isinstance(spec, Mapping) else {}, kind


def topic(c: Compilation, backend: str, namespace: str, name: str) -> str:
    """The storage name: Knative KafkaChannel's topic name on Kafka, else one in its style."""
    if backend == "kafka":
        return f"knative-messaging-kafka.{namespace}.{name}"
    return f"knative-channel-{namespace}-{name}"


def _backend_config(
    c: Compilation, backend: str, spec: Mapping[str, Any], issues: validate.Issues
) -> dict[str, str]:
    config: dict[str, str] = {}
    if backend == "kafka":
        config = dict(c.env.default_kafka_config)
        for fld, key in (
            ("numPartitions", "default.topic.partitions"),
            ("replicationFactor", "default.topic.replication.factor"),
        ):
            value = spec.get(fld)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                issues.error(f"spec.{fld}", f"must be a positive integer, got {value!r}")
                continue
            config[key] = str(value)
        if not config.get("bootstrap.servers"):
            issues.error(
                "spec",
                "KafkaChannel needs a Kafka cluster: run kbroker with --kafka",
                REASON_BACKING,
            )
    elif backend == "nats":
        if not c.env.nats_url:
            issues.error(
                "spec",
                "NatsJetStreamChannel needs a NATS server: run kbroker with --nats URL",
                REASON_BACKING,
            )
        config = channel_template._config("nats", spec, "spec", issues)
    return config


def compile_channel(
    c: Compilation, o: Obj, addresses: Mapping[tuple[str, str], str]
) -> ChannelOutcome:
    """One channel object (any of `KINDS`) -> its outcome; `addresses` resolve Broker refs."""
    spec = o.spec if isinstance(o.spec, Mapping) else {}
    issues, backend_issues = validate.Issues(), validate.Issues()
    if not isinstance(o.spec, Mapping):
        issues.error("spec", "expected a mapping")
    if spec.get("subscribers"):
        issues.error(
            "spec.subscribers",
            "must not set the field(s): spec.subscribable.subscribers (Subscriptions fill them in)",
        )
    generic = o.kind == GENERIC
    if generic:
        template = spec.get("channelTemplate") or default_template(c, o.namespace)
        backend, backend_spec, backing_kind = template_backend(
            template, "spec.channelTemplate", backend_issues
        )
    else:
        backend, backend_spec, backing_kind = BACKING_KINDS[o.kind][1], spec, o.kind
    if backend:
        backend = c.env.channel_backends.get(backing_kind, backend)
    config = _backend_config(c, backend, backend_spec, backend_issues) if backend else {}

    delivery_issues = validate.Issues()
    raw_delivery = spec.get("delivery")
    delivery, dls_raw = (
        validate.delivery(raw_delivery, "spec.delivery", delivery_issues)
        if raw_delivery is not None
        else (contract.DeliverySpec(), None)
    )
    dls_cond, dls_uri, dls_error = resolve.dead_letter(
        dls_raw, o.namespace, "spec.delivery.deadLetterSink", addresses, c.env.resolver
    )
    if dls_error is not None:
        c.problem(o, o.source, dls_error.field, dls_error.message, "error")
    c.report(o, issues)
    c.report(o, backend_issues)
    c.report(o, delivery_issues)

    url = address(c, o.namespace, o.name)
    backend_cond = from_issues(
        "DispatcherReady",
        validate.Issues([*issues.items, *backend_issues.items, *delivery_issues.items]),
    )
    given = {
        "Addressable": status.true("Addressable"),
        "DeadLetterSinkResolved": dls_cond,
        "EventPoliciesReady": status.true("EventPoliciesReady", status.REASON_OIDC_DISABLED_BROKER),
    }
    extra: list[tuple[str, Any]] = []
    if generic:
        given["BackingChannelReady"] = dataclasses.replace(backend_cond, type="BackingChannelReady")
        conditions = status.with_ready(GENERIC_CONDITIONS, given)
        if backing_kind in BACKING_KINDS:
            extra.append(
                (
                    "channel",
                    {
                        "apiVersion": BACKING_KINDS[backing_kind][0],
                        "kind": backing_kind,
                        "name": o.name,
                        "namespace": o.namespace,
                    },
                )
            )
    else:
        given["DispatcherReady"] = backend_cond
        conditions = status.with_ready(CHANNEL_CONDITIONS, given)
    storage = topic(c, backend, o.namespace, o.name)
    st = status.ObjectStatus(
        kind=o.kind,
        namespace=o.namespace,
        name=o.name,
        generation=o.generation,
        conditions=conditions,
        address_url=url,
        address_ca_certs=c.env.ingress_ca_certs,
        dead_letter_sink_uri=dls_uri,
        annotations=(("kbroker.dev/channel", backend), ("default.topic", storage))
        if backend
        else (),
        warnings=tuple(
            str(i) for i in (*issues.items, *backend_issues.items) if i.severity == "warning"
        ),
        extra=tuple(extra),
    )
    entry = None
    if st.ready:
        entry = contract.Broker(
            namespace=o.namespace,
            name=o.name,
            uid=o.uid(),
            address=url,
            channel=backend,
            channel_config=tuple(sorted(config.items())),
            topic=storage,
            generation=o.generation,
            kind=contract.CHANNEL,
        )
    ok = None
    if not delivery_issues.errors and dls_error is None:
        ok = dataclasses.replace(delivery, dead_letter_uri=dls_uri)
    return ChannelOutcome(o, entry, st, ok, raw_delivery is not None)


def backing_status(outcome: ChannelOutcome) -> status.ObjectStatus | None:
    """The status of a generic Channel's backing channel (same name, its template's kind)."""
    ref = dict(outcome.status.extra).get("channel")
    if not isinstance(ref, Mapping):
        return None
    ready = outcome.status.condition("BackingChannelReady") or status.unknown("DispatcherReady")
    given = {
        "DispatcherReady": dataclasses.replace(ready, type="DispatcherReady"),
        "Addressable": status.true("Addressable"),
        "DeadLetterSinkResolved": outcome.status.condition("DeadLetterSinkResolved")
        or status.unknown("DeadLetterSinkResolved"),
        "EventPoliciesReady": status.true("EventPoliciesReady", status.REASON_OIDC_DISABLED_BROKER),
    }
    return dataclasses.replace(
        outcome.status,
        kind=str(ref["kind"]),
        conditions=status.with_ready(CHANNEL_CONDITIONS, given),
        extra=(),
    )


def with_subscribers(
    st: status.ObjectStatus, subscribers: list[tuple[str, int, status.ObjectStatus]]
) -> status.ObjectStatus:
    """A channel's status with `status.subscribers[]` ({uid, observedGeneration, ready})."""
    if not subscribers:
        return st
    rows = []
    for uid, generation, sub in subscribers:
        ready = sub.condition(status.READY)
        row: dict[str, Any] = {
            "uid": uid,
            "observedGeneration": generation,
            "ready": ready.status if ready else status.UNKNOWN,
        }
        if ready is not None and ready.message:
            row["message"] = ready.message
        rows.append(row)
    return dataclasses.replace(st, extra=(*st.extra, ("subscribers", rows)))
