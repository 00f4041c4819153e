"""Subscriptions (messaging.knative.dev/v1) -> contract entries of kind SUBSCRIPTION and status.

A Subscription reads its channel the way a Trigger reads its Broker, so it compiles to a
`contract.Trigger` with `kind=SUBSCRIPTION`: no filter, the subscriber, the reply URL (a reply
event goes there, and is dropped when there is none, as Knative's channel dispatcher does) and the
delivery spec. The dispatcher that serves Triggers serves Subscriptions: same retries, backoff,
dead-letter sink with `knativeerror*` extensions, ordering annotation, tracing.

Rules (Knative's Subscription):
- `spec.channel` and `spec.subscriber` are required; `channel` is immutable (see `flows_validate`).
- Delivery is the Subscription's own `spec.delivery`, else its channel's, whole-object.
- A Subscription starts at the beginning of its channel (the start-from annotation may say
  `latest`): a channel exists for its subscribers, and what was stored before the Subscription's
  reader started must still reach it.

What this module refuses: a channel in another namespace (cross-namespace-event-links).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kbroker.controller import channels, resolve, status, validate
from kbroker.controller.channels import ChannelOutcome
from kbroker.controller.compilation import Compilation, Obj
from kbroker.core import contract

SUBSCRIPTION_CONDITIONS = (
    "ReferencesResolved",
    "AddedToChannel",
    "ChannelReady",
    "OIDCIdentityCreated",
)
REASON_CHANNEL_REF = "ChannelReferenceFailed"
REASON_SUBSCRIBER = "SubscriberResolveFailed"
REASON_REPLY = "ReplyResolveFailed"
REASON_DLS = "DeadLetterSinkResolveFailed"
REASON_NOT_READY = "SubscriptionNotMarkedReadyByChannel"


def channel_name(o: Obj, spec: Mapping[str, Any], issues: validate.Issues) -> str:
    """The name of the channel `spec.channel` references ("" when it is invalid)."""
    ref = spec.get("channel")
    if not isinstance(ref, Mapping):
        issues.error("spec.channel", "missing field(s): spec.channel")
        return ""
    missing = [k for k in ("apiVersion", "kind", "name") if not ref.get(k)]
    if missing:
        issues.error(
            "spec.channel", "missing field(s): " + ", ".join(f"spec.channel.{k}" for k in missing)
        )
        return ""
    if not channels.is_channel_ref(ref):
        issues.error(
            "spec.channel",
            f"{ref.get('apiVersion')}/{ref.get('kind')} is not a channel kind kbroker runs "
            f"(Channel, {', '.join(sorted(channels.BACKING_KINDS))})",
        )
        return ""
    if ref.get("namespace") not in (None, "", o.namespace):
        issues.error("spec.channel.namespace", "cross-namespace channels are not supported")
        return ""
    return str(ref["name"])


def _kind_matches(ref_kind: str, outcome: ChannelOutcome) -> bool:
    if ref_kind == outcome.obj.kind:
        return True
    backing = dict(outcome.status.extra).get("channel")
    return isinstance(backing, Mapping) and backing.get("kind") == ref_kind


def compile_subscription(
    c: Compilation,
    o: Obj,
    chans: Mapping[tuple[str, str], ChannelOutcome],
    addresses: Mapping[tuple[str, str], str],
) -> contract.Trigger | None:
    """One Subscription -> its contract entry (None when not Ready); its status lands in `c`."""
    spec = o.spec if isinstance(o.spec, Mapping) else {}
    issues, ref_issues = validate.Issues(), validate.Issues()
    if not isinstance(o.spec, Mapping):
        issues.error("spec", "expected a mapping")
    name = channel_name(o, spec, ref_issues)
    outcome = chans.get((o.namespace, name)) if name else None
    ref_kind = str((spec.get("channel") or {}).get("kind") or "") if name else ""
    if outcome is not None and not _kind_matches(ref_kind, outcome):
        outcome = None

    def dest(field: str, reason: str) -> str | None:
        raw = spec.get(field.split(".")[-1])
        try:
            return resolve.resolve_destination(
                raw, o.namespace, f"spec.{field}", addresses, c.env.resolver
            )
        except resolve.DestinationError as exc:
            ref_issues.error(exc.field, exc.message, reason)
            return None

    subscriber_uri: str | None = None
    if spec.get("subscriber") is None:
        ref_issues.error(
            "spec.subscriber", "the Subscription must reference a subscriber", REASON_SUBSCRIBER
        )
    else:
        subscriber_uri = dest("subscriber", REASON_SUBSCRIBER)
    reply_uri = dest("reply", REASON_REPLY) if spec.get("reply") is not None else ""

    delivery: contract.DeliverySpec | None = None
    raw_delivery = spec.get("delivery")
    if raw_delivery is not None:
        own, dls_raw = validate.delivery(raw_delivery, "spec.delivery", issues)
        _, dls_uri, dls_error = resolve.dead_letter(
            dls_raw, o.namespace, "spec.delivery.deadLetterSink", addresses, c.env.resolver
        )
        if dls_error is not None:
            ref_issues.error(dls_error.field, dls_error.message, REASON_DLS)
        else:
            delivery = dataclasses.replace(own, dead_letter_uri=dls_uri)
    elif outcome is not None:
        delivery = outcome.delivery if outcome.has_delivery else contract.DeliverySpec()
    order = validate.order(o.annotations, issues)
    max_in_flight = validate.max_in_flight(o.annotations, c.env.default_max_in_flight, issues)
    start_from = (
        validate.start_from(o.annotations, issues)
        if validate.START_FROM_ANNOTATION in o.annotations
        else contract.StartFrom.EARLIEST
    )
    c.report(o, ref_issues)
    c.report(o, issues)

    if name and outcome is None:
        refs = status.unknown(
            "ReferencesResolved",
            REASON_CHANNEL_REF,
            f"Failed to get Spec.Channel or backing channel: {ref_kind} {o.namespace}/{name} "
            "does not exist",
        )
        c.problem(
            o,
            o.source,
            "spec.channel",
            f'channel "{name}" does not exist (the Subscription waits for it)',
            "warning",
        )
    elif ref_issues.errors:
        first = ref_issues.errors[0]
        refs = status.false(
            "ReferencesResolved", first.reason, "; ".join(str(i) for i in ref_issues.errors)
        )
    else:
        refs = status.true("ReferencesResolved")
    invalid = issues.errors
    added = (
        status.false("AddedToChannel", validate.REASON_INVALID, "; ".join(map(str, invalid)))
        if invalid
        else status.true("AddedToChannel")
        if outcome is not None
        else status.unknown("AddedToChannel")
    )
    if outcome is None:
        channel_ready = status.unknown("ChannelReady")
    elif outcome.status.ready and outcome.delivery is not None:
        channel_ready = status.true("ChannelReady")
    else:
        top = outcome.status.conditions[0]
        channel_ready = status.Condition(
            "ChannelReady",
            top.status if top.status != status.TRUE else status.FALSE,
            REASON_NOT_READY,
            top.message or "the channel's delivery is invalid",
        )
    st = status.ObjectStatus(
        kind="Subscription",
        namespace=o.namespace,
        name=o.name,
        generation=o.generation,
        conditions=status.with_ready(
            SUBSCRIPTION_CONDITIONS,
            {
                "ReferencesResolved": refs,
                "AddedToChannel": added,
                "ChannelReady": channel_ready,
                "OIDCIdentityCreated": status.true(
                    "OIDCIdentityCreated", status.REASON_OIDC_DISABLED_TRIGGER
                ),
            },
        ),
        subscriber_uri=subscriber_uri,
        dead_letter_sink_uri=delivery.dead_letter_uri if delivery else None,
        warnings=tuple(str(i) for i in issues.items if i.severity == "warning"),
        extra=(("physicalSubscription", _physical(subscriber_uri, reply_uri, delivery)),),
    )
    c.statuses[("Subscription", o.namespace, o.name)] = st
    if not st.ready or delivery is None or subscriber_uri is None or reply_uri is None:
        return None
    return contract.Trigger(
        namespace=o.namespace,
        name=o.name,
        uid=contract.TriggerUid(o.uid()),
        broker=name,
        subscriber_uri=subscriber_uri,
        delivery=delivery,
        order=order,
        max_in_flight=max_in_flight,
        start_from=start_from,
        consumer_group=f"knative-subscription-{o.namespace}-{o.name}",
        generation=o.generation,
        kind=contract.SUBSCRIPTION,
        reply_uri=reply_uri,
    )


def _physical(
    subscriber: str | None, reply: str | None, delivery: contract.DeliverySpec | None
) -> dict[str, str]:
    out = {}
    if subscriber:
        out["subscriberUri"] = subscriber
    if reply:
        out["replyUri"] = reply
    if delivery is not None and delivery.dead_letter_uri:
        out["deadLetterSinkUri"] = delivery.dead_letter_uri
    return out
