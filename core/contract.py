"""The contract: the one interface between the control plane and the data plane.

The controller (standalone file watcher or Kubernetes reconciler) compiles every Broker and Trigger
into one `Contract`; ingress and dispatcher read nothing else. Workflows need no entries of their
own: a channel is a `Broker` entry of kind CHANNEL and a Subscription a `Trigger` entry of kind
SUBSCRIPTION (see controller/flows.py), so one ingress and one dispatcher serve them all.

It is a plain, versioned value: frozen dataclasses with `to_json`/`from_json`, a monotonic
`generation`, and changes that are additive only (new fields get defaults, so an older data plane
reads a newer contract).

What the contract refuses to hold: Kubernetes objects, unresolved references, anything that needs a
lookup at dispatch time. Every URL in it is already resolved and every default already applied.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NewType

import orjson
from kbroker.core import contract_ping
from kbroker.core.contract_ping import PingSource as PingSource

BrokerKey = NewType("BrokerKey", str)
"""`<namespace>/<name>`: how ingress finds a broker from its request path."""

TriggerUid = NewType("TriggerUid", str)
"""Stable identity of a trigger's position in a channel (survives edits of the Trigger)."""

# What a `Broker` entry stands for: a Broker, or a channel (messaging.knative.dev: InMemoryChannel,
# KafkaChannel, ... and the channels Sequences and Parallels are built of). Both are a log with an
# address; only their key and their address differ, so the data plane handles them alike.
BROKER = "Broker"
CHANNEL = "Channel"
# What a `Trigger` entry stands for: a Trigger (replies go back to its Broker) or a Subscription
# (replies go to `reply_uri`, or nowhere when it is empty, as Knative's channel dispatcher does).
TRIGGER = "Trigger"
SUBSCRIPTION = "Subscription"

CHANNEL_PATH = "channels"
"""A channel's ingress path is `/channels/<namespace>/<name>`: three segments, so it never
collides with a Broker's `/<namespace>/<name>`, whatever the names."""


def channel_key(namespace: str, name: str) -> BrokerKey:
    """The key of a channel entry: its ingress path without the leading slash."""
    return BrokerKey(f"{CHANNEL_PATH}/{namespace}/{name}")


class BackoffPolicy(enum.Enum):
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


class Durability(enum.Enum):
    """How safe an event is when ingress answers 202 (the producer's choice per request).

    `none`: accepted in memory; `leader`: written to the local log or the partition leader;
    `all`: fsynced, or replicated to every in-sync replica.
    """

    NONE = "none"
    LEADER = "leader"
    ALL = "all"


class DeliveryOrder(enum.Enum):
    UNORDERED = "unordered"
    ORDERED = "ordered"


class StartFrom(enum.Enum):
    """Where a new Trigger starts reading: the log's end (Knative parity) or its beginning."""

    LATEST = "latest"
    EARLIEST = "earliest"


@dataclass(frozen=True, slots=True)
class DeliverySpec:
    """Knative's DeliverySpec with durations in seconds and the dead-letter sink resolved."""

    retry: int = 0
    backoff_policy: BackoffPolicy | None = None
    backoff_delay: float | None = None
    timeout: float | None = None
    retry_after_max: float | None = None
    dead_letter_uri: str | None = None
    format: str | None = None  # "json" (structured) | "binary"; None means binary


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """One node of a Trigger filter, in the shape of Knative's API.

    `dialect` is one of: `attributes` (legacy `filter.attributes`), `exact`, `prefix`, `suffix`
    (use `attributes`), `all`, `any` (use `children`), `not` (one child), `cesql` (`expression`).
    """

    dialect: str
    attributes: tuple[tuple[str, str], ...] = ()
    children: tuple[FilterSpec, ...] = ()
    expression: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """One EventPolicy as ingress applies it: who may send (`subjects`, a trailing `*` is a prefix
    match) and which events they may send (`filters`, implicit AND, empty passes everything)."""

    name: str
    subjects: tuple[str, ...]
    filters: tuple[FilterSpec, ...] = ()


class AuthorizationMode(enum.Enum):
    """config-features `default-authorization-mode`: what decides when no EventPolicy applies."""

    ALLOW_SAME_NAMESPACE = "allow-same-namespace"
    ALLOW_ALL = "allow-all"
    DENY_ALL = "deny-all"


@dataclass(frozen=True, slots=True)
class OIDC:
    """How ingress checks senders' tokens and how the dispatcher gets its own (authentication-oidc
    is on when the contract carries one of these)."""

    issuers: tuple[str, ...] = ()  # allowed `iss` values; empty: the discovered issuer only
    jwks: str = ""  # a JWKS file path or http(s) URL; "" means discovery
    discovery_url: str = ""  # base URL serving /.well-known/openid-configuration
    leeway: float = 60.0  # seconds of clock skew tolerated on exp/nbf/iat
    default_mode: AuthorizationMode = AuthorizationMode.ALLOW_SAME_NAMESPACE
    signing_key: str = ""  # PEM private key file the dispatcher signs its tokens with
    token_issuer: str = "kbroker"  # `iss` of the dispatcher's tokens
    # Credentials for discovery and the JWKS (the API server wants them): a bearer token file
    # and a CA bundle file; "" means none / the system's trust store.
    token_file: str = ""
    ca_file: str = ""


@dataclass(frozen=True, slots=True)
class Quota:
    """A Broker's ingress quota: token buckets on events and on body bytes per second.

    `None` means no limit on that dimension. A burst is how much may arrive at once after a quiet
    spell; it defaults to one second's worth (at least one event, or one maximum-size body)."""

    events_per_second: float | None = None
    event_burst: int | None = None
    bytes_per_second: float | None = None
    byte_burst: int | None = None


@dataclass(frozen=True, slots=True)
class Broker:
    namespace: str
    name: str
    uid: str
    address: str  # the URL producers POST to; replies are POSTed here too
    channel: str = "embedded"  # backend module under core/channels
    channel_config: tuple[tuple[str, str], ...] = ()  # e.g. bootstrap.servers for kafka
    topic: str = ""  # storage name inside the channel (Kafka topic, embedded log name)
    external_topic: bool = False  # storage owned by someone else: never created or deleted
    default_durability: Durability = Durability.ALL
    generation: int = 0  # metadata.generation of the object this entry came from
    # Sender authentication: the audience a token must carry; "" when authentication-oidc is off.
    audience: str = ""
    # The Ready EventPolicies that apply to this Broker; empty means the default mode decides.
    policies: tuple[Policy, ...] = ()
    quota: Quota | None = None  # ingress rate/size quota; None: unlimited (the common case)
    kind: str = BROKER  # BROKER | CHANNEL

    @property
    def key(self) -> BrokerKey:
        if self.kind == CHANNEL:
            return channel_key(self.namespace, self.name)
        return BrokerKey(f"{self.namespace}/{self.name}")


@dataclass(frozen=True, slots=True)
class Trigger:
    namespace: str
    name: str
    uid: TriggerUid
    broker: str  # name of the Broker in the same namespace
    subscriber_uri: str
    filters: tuple[FilterSpec, ...] = ()  # implicit AND; empty passes everything
    delivery: DeliverySpec = field(default_factory=DeliverySpec)  # effective (Trigger ?? Broker)
    order: DeliveryOrder = DeliveryOrder.UNORDERED
    max_in_flight: int = 100
    start_from: StartFrom = StartFrom.LATEST
    consumer_group: str = ""  # Kafka consumer group id
    generation: int = 0
    # Token audiences for the subscriber and dead-letter sink ("" sends no token), and the
    # subject the dispatcher's tokens name for this Trigger.
    subscriber_audience: str = ""
    dead_letter_audience: str = ""
    identity: str = ""
    kind: str = TRIGGER  # TRIGGER | SUBSCRIPTION (then `broker` names a channel)
    reply_uri: str = ""  # a Subscription's reply; "" drops replies (Triggers: unused)
    reply_audience: str = ""

    @property
    def broker_key(self) -> BrokerKey:
        if self.kind == SUBSCRIPTION:
            return channel_key(self.namespace, self.broker)
        return BrokerKey(f"{self.namespace}/{self.broker}")

    def reply_address(self, broker: Broker) -> str:
        """Where a reply event goes: a Trigger's Broker, a Subscription's reply ("" = dropped)."""
        return self.reply_uri if self.kind == SUBSCRIPTION else broker.address


@dataclass(frozen=True, slots=True)
class Contract:
    generation: int = 0
    brokers: tuple[Broker, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    oidc: OIDC | None = None  # None: authentication-oidc disabled
    sources: tuple[PingSource, ...] = ()

    def broker(self, key: str) -> Broker | None:
        for b in self.brokers:
            if b.key == key:
                return b
        return None

    def triggers_of(self, key: str) -> tuple[Trigger, ...]:
        return tuple(t for t in self.triggers if t.broker_key == key)

    def to_json(self) -> bytes:
        return orjson.dumps(_encode(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @staticmethod
    def from_json(raw: bytes | str) -> Contract:
        return _decode_contract(orjson.loads(raw))


# --- JSON mapping -------------------------------------------------------------------------------
# Written by hand rather than with a generic dataclass walker so the wire names are stable
# (camelCase, like Knative's contract.proto) and unknown fields from a newer writer are ignored.


def _encode(c: Contract) -> dict[str, Any]:
    return {
        "generation": c.generation,
        "brokers": [_enc_broker(b) for b in c.brokers],
        "triggers": [_enc_trigger(t) for t in c.triggers],
        **({"oidc": _enc_oidc(c.oidc)} if c.oidc is not None else {}),
        **({"sources": [contract_ping.encode(p) for p in c.sources]} if c.sources else {}),
    }


def _enc_oidc(o: OIDC) -> dict[str, Any]:
    return {
        "issuers": list(o.issuers),
        "jwks": o.jwks,
        "discoveryUrl": o.discovery_url,
        "leeway": o.leeway,
        "defaultAuthorizationMode": o.default_mode.value,
        "signingKey": o.signing_key,
        "tokenIssuer": o.token_issuer,
        "tokenFile": o.token_file,
        "caFile": o.ca_file,
    }


def _dec_oidc(d: dict[str, Any] | None) -> OIDC | None:
    if d is None:
        return None
    return OIDC(
        issuers=tuple(str(i) for i in d.get("issuers", ())),
        jwks=d.get("jwks", ""),
        discovery_url=d.get("discoveryUrl", ""),
        leeway=float(d.get("leeway", 60.0)),
        default_mode=AuthorizationMode(d.get("defaultAuthorizationMode", "allow-same-namespace")),
        signing_key=d.get("signingKey", ""),
        token_issuer=d.get("tokenIssuer", "kbroker"),
        token_file=d.get("tokenFile", ""),
        ca_file=d.get("caFile", ""),
    )


def _enc_policy(p: Policy) -> dict[str, Any]:
    return {
        "name": p.name,
        "subjects": list(p.subjects),
        "filters": [_enc_filter(f) for f in p.filters],
    }


def _dec_policy(d: dict[str, Any]) -> Policy:
    return Policy(
        name=d["name"],
        subjects=tuple(str(s) for s in d.get("subjects", ())),
        filters=tuple(_dec_filter(f) for f in d.get("filters", ())),
    )


def _enc_broker(b: Broker) -> dict[str, Any]:
    out: dict[str, Any] = {
        "namespace": b.namespace,
        "name": b.name,
        "uid": b.uid,
        "address": b.address,
        "channel": b.channel,
        "channelConfig": dict(b.channel_config),
        "topic": b.topic,
        "externalTopic": b.external_topic,
        "defaultDurability": b.default_durability.value,
        "generation": b.generation,
        "audience": b.audience,
        "policies": [_enc_policy(p) for p in b.policies],
    }
    if b.kind != BROKER:
        out["kind"] = b.kind
    if b.quota is not None:
        out["quota"] = {
            "eventsPerSecond": b.quota.events_per_second,
            "eventBurst": b.quota.event_burst,
            "bytesPerSecond": b.quota.bytes_per_second,
            "byteBurst": b.quota.byte_burst,
        }
    return out


def _enc_delivery(d: DeliverySpec) -> dict[str, Any]:
    return {
        "retry": d.retry,
        "backoffPolicy": d.backoff_policy.value if d.backoff_policy else None,
        "backoffDelay": d.backoff_delay,
        "timeout": d.timeout,
        "retryAfterMax": d.retry_after_max,
        "deadLetterUri": d.dead_letter_uri,
        "format": d.format,
    }


def _enc_filter(f: FilterSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"dialect": f.dialect}
    if f.attributes:
        out["attributes"] = [list(kv) for kv in f.attributes]
    if f.children:
        out["children"] = [_enc_filter(c) for c in f.children]
    if f.expression:
        out["expression"] = f.expression
    return out


def _enc_trigger(t: Trigger) -> dict[str, Any]:
    out = _enc_trigger_fields(t)
    if t.kind != TRIGGER:
        out.update(kind=t.kind, replyUri=t.reply_uri, replyAudience=t.reply_audience)
    return out


def _enc_trigger_fields(t: Trigger) -> dict[str, Any]:
    return {
        "namespace": t.namespace,
        "name": t.name,
        "uid": t.uid,
        "broker": t.broker,
        "subscriberUri": t.subscriber_uri,
        "filters": [_enc_filter(f) for f in t.filters],
        "delivery": _enc_delivery(t.delivery),
        "order": t.order.value,
        "maxInFlight": t.max_in_flight,
        "startFrom": t.start_from.value,
        "consumerGroup": t.consumer_group,
        "generation": t.generation,
        "subscriberAudience": t.subscriber_audience,
        "deadLetterAudience": t.dead_letter_audience,
        "identity": t.identity,
    }


def _decode_contract(d: dict[str, Any]) -> Contract:
    return Contract(
        generation=int(d.get("generation", 0)),
        brokers=tuple(_dec_broker(b) for b in d.get("brokers", ())),
        triggers=tuple(_dec_trigger(t) for t in d.get("triggers", ())),
        oidc=_dec_oidc(d.get("oidc")),
        sources=tuple(contract_ping.decode(p) for p in d.get("sources", ())),
    )


def _dec_broker(d: dict[str, Any]) -> Broker:
    return Broker(
        namespace=d["namespace"],
        name=d["name"],
        uid=d.get("uid", ""),
        address=d.get("address", ""),
        channel=d.get("channel", "embedded"),
        channel_config=tuple(
            sorted((str(k), str(v)) for k, v in d.get("channelConfig", {}).items())
        ),
        topic=d.get("topic", ""),
        external_topic=bool(d.get("externalTopic", False)),
        default_durability=Durability(d.get("defaultDurability", "all")),
        generation=int(d.get("generation", 0)),
        audience=d.get("audience", ""),
        policies=tuple(_dec_policy(p) for p in d.get("policies", ())),
        quota=_dec_quota(d.get("quota")),
        kind=d.get("kind", BROKER),
    )


def _dec_quota(d: dict[str, Any] | None) -> Quota | None:
    if not d:
        return None
    return Quota(
        events_per_second=d.get("eventsPerSecond"),
        event_burst=d.get("eventBurst"),
        bytes_per_second=d.get("bytesPerSecond"),
        byte_burst=d.get("byteBurst"),
    )


def _dec_delivery(d: dict[str, Any] | None) -> DeliverySpec:
    if not d:
        return DeliverySpec()
    policy = d.get("backoffPolicy")
    return DeliverySpec(
        retry=int(d.get("retry") or 0),
        backoff_policy=BackoffPolicy(policy) if policy else None,
        backoff_delay=d.get("backoffDelay"),
        timeout=d.get("timeout"),
        retry_after_max=d.get("retryAfterMax"),
        dead_letter_uri=d.get("deadLetterUri"),
        format=d.get("format"),
    )


def _dec_filter(d: dict[str, Any]) -> FilterSpec:
    return FilterSpec(
        dialect=d["dialect"],
        attributes=tuple((str(k), str(v)) for k, v in d.get("attributes", ())),
        children=tuple(_dec_filter(c) for c in d.get("children", ())),
        expression=d.get("expression", ""),
    )


def _dec_trigger(d: dict[str, Any]) -> Trigger:
    return Trigger(
        namespace=d["namespace"],
        name=d["name"],
        uid=TriggerUid(d.get("uid", "")),
        broker=d["broker"],
        subscriber_uri=d.get("subscriberUri", ""),
        filters=tuple(_dec_filter(f) for f in d.get("filters", ())),
        delivery=_dec_delivery(d.get("delivery")),
        order=DeliveryOrder(d.get("order", "unordered")),
        max_in_flight=int(d.get("maxInFlight", 100)),
        start_from=StartFrom(d.get("startFrom", "latest")),
        consumer_group=d.get("consumerGroup", ""),
        generation=int(d.get("generation", 0)),
        subscriber_audience=d.get("subscriberAudience", ""),
        dead_letter_audience=d.get("deadLetterAudience", ""),
        identity=d.get("identity", ""),
        kind=d.get("kind", TRIGGER),
        reply_uri=d.get("replyUri", ""),
        reply_audience=d.get("replyAudience", ""),
    )
