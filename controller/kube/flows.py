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
  Subscription's channel), so the resolver prefetches them like Triggers' subscribers;
- which channels' storage (embedded log, Kafka topic) no object owns any more, so it is deleted.
  Channels get no finalizer: their storage goes once no object in the cluster could own it by
  name and the data plane serves a contract without it. An object that is merely invalid still
  owns its storage, so fixing it loses nothing.

A Sequence or Parallel does not become Channel and Subscription objects in the API server: its
internal channels and subscriptions are entries of the contract, named as Knative names its
objects, and their readiness is reported in the flow's own status (see docs/flows.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from kbroker.controller.kube.api import Resource
from kbroker.core import contract as ct

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


_SEQUENCE_CHANNEL = re.compile(r"(.+)-kn-sequence-\d+")
_PARALLEL_CHANNEL = re.compile(r"(.+)-kn-parallel(?:-\d+)?")
_PARALLEL_PART = re.compile(r"(.+)-kn-parallel(?:-filter)?(?:-\d+)?")

Present = Mapping[str, Mapping[tuple[str, str], Any]]  # kind -> the informer's objects


def owner_exists(namespace: str, name: str, present: Present) -> bool:
    """Whether some object in the cluster is (or builds) the channel `namespace/name`."""
    key = (namespace, name)
    if any(key in present.get(r.kind, {}) for r in KINDS if r.kind not in _NOT_CHANNELS):
        return True
    seq = _SEQUENCE_CHANNEL.fullmatch(name)
    if seq and (namespace, seq.group(1)) in present.get(SEQUENCES.kind, {}):
        return True
    par = _PARALLEL_CHANNEL.fullmatch(name)
    return bool(par and (namespace, par.group(1)) in present.get(PARALLELS.kind, {}))


_NOT_CHANNELS = frozenset({SUBSCRIPTIONS.kind, SEQUENCES.kind, PARALLELS.kind})


def orphaned(
    stored: Iterable[ct.Broker], current: ct.Contract, present: Present
) -> list[ct.Broker]:
    """The channel entries whose storage exists but which nothing serves or owns any more."""
    served = {b.key for b in current.brokers}
    return [
        b
        for b in stored
        if b.kind == ct.CHANNEL
        and b.key not in served
        and not owner_exists(b.namespace, b.name, present)
    ]


def storage_error(kind: str, namespace: str, name: str, errors: Mapping[str, str]) -> str | None:
    """The first storage failure among the channels of a channel object or of a flow."""
    if not errors:
        return None
    mine = []
    for key, message in sorted(errors.items()):
        prefix, _, rest = key.partition("/")
        ns, _, channel = rest.partition("/")
        if prefix != ct.CHANNEL_PATH or ns != namespace:
            continue
        seq = _SEQUENCE_CHANNEL.fullmatch(channel)
        par = _PARALLEL_CHANNEL.fullmatch(channel)
        if (
            (kind not in _NOT_CHANNELS and channel == name)
            or (kind == SEQUENCES.kind and seq and seq.group(1) == name)
            or (kind == PARALLELS.kind and par and par.group(1) == name)
        ):
            mine.append(f"channel {channel}: {message}")
    return "; ".join(mine) or None


def entries_of(kind: str, namespace: str, name: str, c: ct.Contract) -> tuple[object, ...]:
    """The contract entries (channels, subscriptions) an object of `kind` stands for: Ready waits
    until the data plane serves a contract with all of them as they are now."""

    def mine(entry_name: str) -> bool:
        if kind == SEQUENCES.kind:
            m = _SEQUENCE_CHANNEL.fullmatch(entry_name)
        elif kind == PARALLELS.kind:
            m = _PARALLEL_PART.fullmatch(entry_name)
        else:
            return entry_name == name
        return bool(m and m.group(1) == name)

    channels = () if kind == SUBSCRIPTIONS.kind else c.brokers
    subs = c.triggers if kind in _NOT_CHANNELS else ()
    return (
        *(
            b
            for b in channels
            if b.kind == ct.CHANNEL and b.namespace == namespace and mine(b.name)
        ),
        *(
            t
            for t in subs
            if t.kind == ct.SUBSCRIPTION and t.namespace == namespace and mine(t.name)
        ),
    )
