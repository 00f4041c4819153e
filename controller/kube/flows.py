"""The workflow kinds in cluster mode: which resources the controller watches, and what it reads.

Channels (Channel, InMemoryChannel, KafkaChannel, NatsJetStreamChannel), Subscriptions, Sequences
and Parallels go through the same compile as Brokers and Triggers: the reconciler keeps one
informer per kind, hands every object to `controller.compiler`, and patches the Knative-shaped
status compile returns. This module holds what is specific to them, so the reconciler only
gains a loop over `KINDS`:

- the REST resources, each with the API version Knative serves it at;
- that each of them may be absent: a cluster without the KafkaChannel (or any workflow) CRD must
  still reconcile everything else, so their informers treat "no such resource" as an empty list;
- the references inside their specs (steps, branches' filters, subscribers and replies, a
  Subscription's channel), so the resolver prefetches them like Triggers' subscribers.

A Sequence or Parallel does not become Channel and Subscription objects in the API server: its
internal channels and subscriptions are entries of the contract, named as Knative names its
objects, and their readiness is reported in the flow's own status (see docs/flows.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kbroker.controller.kube.api import Resource

MESSAGING = "messaging.knative.dev"
FLOWS = "flows.knative.dev"

CHANNELS = Resource(MESSAGING, "v1", "channels", "Channel")
INMEMORYCHANNELS = Resource(MESSAGING, "v1", "inmemorychannels", "InMemoryChannel")
KAFKACHANNELS = Resource(MESSAGING, "v1beta1", "kafkachannels", "KafkaChannel")
NATSCHANNELS = Resource(MESSAGING, "v1alpha1", "natsjetstreamchannels", "NatsJetStreamChannel")
SUBSCRIPTIONS = Resource(MESSAGING, "v1", "subscriptions", "Subscription")
SEQUENCES = Resource(FLOWS, "v1", "sequences", "Sequence")
PARALLELS = Resource(FLOWS, "v1", "parallels", "Parallel")

KINDS: tuple[Resource, ...] = (
    CHANNELS,
    INMEMORYCHANNELS,
    KAFKACHANNELS,
    NATSCHANNELS,
    SUBSCRIPTIONS,
    SEQUENCES,
    PARALLELS,
)

# None of them is needed to serve Brokers and Triggers: a cluster with only the Broker CRDs (or
# RBAC from before these kinds), or without KafkaChannel (eventing-kafka-broker ships that one),
# still reconciles the rest.
OPTIONAL = frozenset(r.kind for r in KINDS)


def refs(obj: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], str]]:
    """Every (ref, namespace) a workflow object's spec names, for the resolver to prefetch."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return []
    meta = obj.get("metadata")
    ns = str((meta if isinstance(meta, Mapping) else {}).get("namespace") or "default")
    dests: list[Any] = [spec.get("subscriber"), spec.get("reply"), _dls(spec)]
    for step in _items(spec.get("steps")):
        dests += [step, _dls(step)]
    for branch in _items(spec.get("branches")):
        dests += [branch.get("filter"), branch.get("subscriber"), branch.get("reply")]
        dests.append(_dls(branch))
    out: list[tuple[Mapping[str, Any], str]] = []
    channel = spec.get("channel")
    if isinstance(channel, Mapping):
        out.append((channel, ns))
    for dest in dests:
        if isinstance(dest, Mapping) and isinstance(dest.get("ref"), Mapping):
            out.append((dest["ref"], ns))
    return out


def _items(value: Any) -> Iterable[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _dls(spec: Mapping[str, Any]) -> Any:
    delivery = spec.get("delivery")
    return delivery.get("deadLetterSink") if isinstance(delivery, Mapping) else None
