"""Knative-shaped status for Brokers and Triggers, as plain values both modes write out.

The standalone controller shows these through `kbroker get` and `/status`; the Kubernetes
controller patches `to_k8s()` into the object's `status`. Condition types and reasons follow
Knative's MT broker (its Broker and Trigger condition sets) so `kn broker|trigger list` reads our
objects the way it reads Knative's: `Ready` is a "living" aggregate that is True only when every
other condition is True, and when it is not, it carries the reason of the first one that fails.

What this module refuses: clocks and I/O. `lastTransitionTime` is stamped only in `to_k8s`, from
a caller-supplied time, and kept from the previous status when a condition did not change (in
Kubernetes the object's stored status; standalone, `controller.transitions`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"

READY = "Ready"

# Broker condition types (MT broker set) in the order a failure is reported.
BROKER_CONDITIONS = (
    "TriggerChannelReady",
    "FilterReady",
    "IngressReady",
    "Addressable",
    "DeadLetterSinkResolved",
    "EventPoliciesReady",
)

# Trigger condition types in the order a failure is reported.
TRIGGER_CONDITIONS = (
    "BrokerReady",
    "SubscriberResolved",
    "DeadLetterSinkResolved",
    "SubscriptionReady",
    "DependencyReady",
    "OIDCIdentityCreated",
)

# Knative's own reason strings, kept verbatim (spaces included) so `kn` shows what it would show.
REASON_SUBSCRIBER_FAILED = "Unable to get the Subscriber's URI"
REASON_DLS_FAILED = "Unable to get the DeadLetterSink's URI"
REASON_DLS_NOT_CONFIGURED = "DeadLetterSinkNotConfigured"
MESSAGE_DLS_NOT_CONFIGURED = "No dead letter sink is configured."
REASON_BROKER_MISSING = "BrokerDoesNotExist"
REASON_OIDC_DISABLED_TRIGGER = "authentication-oidc feature disabled"
REASON_OIDC_DISABLED_BROKER = "OIDCDisabled"


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""
    severity: str = ""


@dataclass(frozen=True, slots=True)
class ObjectStatus:
    kind: str
    namespace: str
    name: str
    generation: int
    conditions: tuple[Condition, ...]
    address_url: str | None = None
    address_ca_certs: str | None = None  # PEM, published with an https address
    subscriber_uri: str | None = None
    dead_letter_sink_uri: str | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    # Sender authentication (authentication-oidc): the address's audience, the Ready EventPolicies
    # applying to a Broker, an EventPolicy's resolved subjects, a Trigger's subscriber audience.
    audience: str | None = None
    policies: tuple[str, ...] = ()
    from_subjects: tuple[str, ...] | None = None
    subscriber_audience: str | None = None
    # Sources: the resolved sink and the (type, source) pairs they emit (status.ceAttributes).
    sink_uri: str | None = None
    ce_attributes: tuple[tuple[str, str], ...] = ()
    # Fields of a kind's own status, as Knative writes them (a Subscription's
    # physicalSubscription, a Sequence's channelStatuses, ...): merged into `to_k8s` as given.
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def ready(self) -> bool:
        c = self.condition(READY)
        return c is not None and c.status == TRUE

    def condition(self, type_: str) -> Condition | None:
        for c in self.conditions:
            if c.type == type_:
                return c
        return None

    def to_k8s(
        self, now: datetime | None = None, previous: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Knative's status JSON. `previous` (the object's current status) keeps the
        lastTransitionTime of conditions whose status did not change, as Kubernetes expects."""
        stamp = rfc3339(now or datetime.now(UTC))
        before = {
            c.get("type"): c
            for c in (previous or {}).get("conditions", ()) or ()
            if isinstance(c, Mapping)
        }
        conditions = []
        for c in sorted(self.conditions, key=lambda c: c.type):
            old = before.get(c.type)
            same = old is not None and old.get("status") == c.status
            out: dict[str, Any] = {
                "type": c.type,
                "status": c.status,
                "lastTransitionTime": old.get("lastTransitionTime", stamp)
                if same and old
                else stamp,
            }
            if c.reason:
                out["reason"] = c.reason
            if c.message:
                out["message"] = c.message
            if c.severity:
                out["severity"] = c.severity
            conditions.append(out)
        status: dict[str, Any] = {"observedGeneration": self.generation, "conditions": conditions}
        if self.address_url:
            address = {"name": "http", "url": self.address_url}
            if self.audience:
                address["audience"] = self.audience
            if self.address_url.startswith("https:"):
                # Knative's strict transport encryption: the one address is https, with the CA.
                address["name"] = "https"
                if self.address_ca_certs:
                    address["CACerts"] = self.address_ca_certs
            status["address"] = address
            status["addresses"] = [dict(address)]
        if self.subscriber_uri:
            status["subscriberUri"] = self.subscriber_uri
        if self.subscriber_audience:
            status["subscriberAudience"] = self.subscriber_audience
        if self.policies:
            status["policies"] = [
                {"apiVersion": "eventing.knative.dev/v1alpha1", "name": n} for n in self.policies
            ]
        if self.from_subjects:
            status["from"] = list(self.from_subjects)
        if self.dead_letter_sink_uri:
            status["deadLetterSinkUri"] = self.dead_letter_sink_uri
        if self.sink_uri:
            status["sinkUri"] = self.sink_uri
        if self.ce_attributes:
            status["ceAttributes"] = [{"type": t, "source": s} for t, s in self.ce_attributes]
        status.update(self.extra)
        annotations = dict(self.annotations)
        if self.warnings:
            # Knative's status has no place for warnings; an annotation keeps the shape intact.
            annotations[WARNINGS_ANNOTATION] = "; ".join(self.warnings)
        if annotations:
            status["annotations"] = annotations
        return status


WARNINGS_ANNOTATION = "kbroker.dev/warnings"


def rfc3339(t: datetime) -> str:
    """Kubernetes' time format: UTC, whole seconds."""
    return t.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def true(type_: str, reason: str = "", message: str = "") -> Condition:
    return Condition(type_, TRUE, reason, message)


def false(type_: str, reason: str, message: str = "") -> Condition:
    return Condition(type_, FALSE, reason, message)


def unknown(type_: str, reason: str = "", message: str = "") -> Condition:
    return Condition(type_, UNKNOWN, reason, message)


def with_ready(order: Iterable[str], given: Mapping[str, Condition]) -> tuple[Condition, ...]:
    """`Ready` first, then every type in `order` (Unknown when not given).

    Ready takes the reason and message of the first False dependent, else of the first Unknown
    one, like knative.dev/pkg's living condition set.
    """
    deps = tuple(given.get(t) or unknown(t) for t in order)
    failed = next((c for c in deps if c.status == FALSE), None)
    pending = next((c for c in deps if c.status == UNKNOWN), None)
    if failed is not None:
        ready = false(READY, failed.reason, failed.message)
    elif pending is not None:
        ready = unknown(READY, pending.reason, pending.message)
    else:
        ready = true(READY)
    return (ready, *deps)
