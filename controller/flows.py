"""Workflows: Knative's Sequence and Parallel (flows.knative.dev/v1), built of channels and
Subscriptions exactly as Knative's reconcilers build them, compiled into the one contract.

How flows map to the contract (the design in one place):

- A channel (InMemoryChannel, KafkaChannel, NatsJetStreamChannel, or `Channel` with a
  `channelTemplate`) is a contract `Broker` entry of kind CHANNEL: a log on the backend its kind
  names, whose address is `<ingress>/channels/<namespace>/<name>` (`channels`).
- A Subscription is a contract `Trigger` entry of kind SUBSCRIPTION: no filter, the subscriber,
  a reply URL and the delivery spec (`subscriptions`). The one dispatcher delivers it: a 2xx reply
  carrying an event goes to the reply URL (dropped when there is none), a 2xx without an event ends
  the event's journey, failures are retried and dead-lettered like a Trigger's.
- A Sequence of N steps expands into N channels and N Subscriptions named `<seq>-kn-sequence-<i>`:
  Subscription i reads channel i, calls step i with step i's delivery, and replies to channel i+1,
  the last one to `spec.reply` (or nowhere). The Sequence's address is channel 0's. A step that
  answers 2xx without an event ends the flow for that event, as in Knative.
- A Parallel expands into an ingress channel `<p>-kn-parallel`, and per branch i a channel
  `<p>-kn-parallel-<i>`, a filter Subscription `<p>-kn-parallel-filter-<i>` on the ingress channel
  (subscriber: the branch's filter, reply: branch channel i; without a filter: subscriber branch
  channel i, no reply) and a subscriber Subscription `<p>-kn-parallel-<i>` on branch channel i
  (subscriber: the branch's subscriber with the branch's delivery, reply: the branch's reply, else
  `spec.reply`). A filter passes an event by answering it (the answer goes on), drops it with a
  2xx and no event. The Parallel's address is the ingress channel's.
- The internal channels and Subscriptions are ordinary objects of the compilation (`expand` makes
  their manifests, owned by the flow), so they get statuses, show in `kbroker get channels` and
  `subscriptions`, and go through the same rules as hand-written ones. In Kubernetes the controller
  may create them as real objects: an object owned by the flow is taken as is, not expanded twice.
- References resolve locally (`LocalResolver`): a Destination `ref` to any channel kind, a Sequence
  or a Parallel resolves to its address, in both modes, when the object exists.
- Status is Knative's: `ChannelsReady`, `SubscriptionsReady`, `Addressable`, `EventPoliciesReady`
  and `Ready`, `status.address.url`, `channelStatuses`/`subscriptionStatuses` (Sequence),
  `ingressChannelStatus`/`branchStatuses` (Parallel).

What this module refuses: flows whose internal names are taken by objects they do not own, and
anything that is not a pure function of the compilation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kbroker.controller import channels, flows_validate, resolve, status, subscriptions
from kbroker.controller.channels import ChannelOutcome
from kbroker.controller.compilation import Compilation, Obj
from kbroker.core import contract

FLOWS_API = "flows.knative.dev/v1"
SUBSCRIPTION_API = "messaging.knative.dev/v1"
FLOW_CONDITIONS = ("ChannelsReady", "SubscriptionsReady", "Addressable", "EventPoliciesReady")
# Annotations of a flow its internal Subscriptions inherit (delivery order, concurrency, start).
INHERITED_ANNOTATIONS = (
    "kafka.eventing.knative.dev/delivery.order",
    "kbroker.dev/max-in-flight",
    "kbroker.dev/start-from",
)


def sequence_channel(seq: str, i: int) -> str:
    return f"{seq}-kn-sequence-{i}"


def parallel_ingress(p: str) -> str:
    return f"{p}-kn-parallel"


def parallel_branch(p: str, i: int) -> str:
    return f"{p}-kn-parallel-{i}"


def parallel_filter(p: str, i: int) -> str:
    return f"{p}-kn-parallel-filter-{i}"


def flow_address_channel(kind: str, name: str) -> str:
    """The internal channel whose address a flow publishes."""
    return sequence_channel(name, 0) if kind == "Sequence" else parallel_ingress(name)


# --- expansion into internal objects -------------------------------------------------------------


def expand(
    flow: Mapping[str, Any], template: Mapping[str, Any] = channels.DEFAULT_TEMPLATE
) -> tuple[dict[str, Any], ...]:
    """The channels and Subscriptions a Sequence or Parallel stands for, as manifests owned by
    it (Knative's names and wiring). `template` is the channelTemplate to use when the flow has
    none. An invalid flow expands to what can be built of it (`flows_validate` says what is
    wrong)."""
    kind = str(flow.get("kind") or "")
    meta = flow.get("metadata") if isinstance(flow.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    spec = flow.get("spec") if isinstance(flow.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    tmpl = spec.get("channelTemplate") if isinstance(spec.get("channelTemplate"), Mapping) else None
    tmpl = tmpl or template
    name, ns = str(meta.get("name") or ""), str(meta.get("namespace") or "default")
    owner = {
        "apiVersion": FLOWS_API,
        "kind": kind,
        "name": name,
        "uid": str(meta.get("uid") or ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }
    ann = meta.get("annotations") if isinstance(meta.get("annotations"), Mapping) else {}
    assert isinstance(ann, Mapping)
    inherited = {k: ann[k] for k in INHERITED_ANNOTATIONS if k in ann}
    label = f"flows.knative.dev/{kind.lower()}-name"

    def metadata(obj_name: str, annotations: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": obj_name,
            "namespace": ns,
            "labels": {label: name},
            "ownerReferences": [dict(owner)],
        }
        if annotations and inherited:
            out["annotations"] = dict(inherited)
        if isinstance(meta.get("generation"), int):
            out["generation"] = meta["generation"]
        return out

    def channel(obj_name: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "apiVersion": str(tmpl.get("apiVersion") or ""),
            "kind": str(tmpl.get("kind") or ""),
            "metadata": metadata(obj_name, False),
            "spec": dict(body) if isinstance(body := tmpl.get("spec"), Mapping) else {},
        }
        return out

    def ref(obj_name: str) -> dict[str, Any]:
        return {
            "ref": {
                "apiVersion": str(tmpl.get("apiVersion") or ""),
                "kind": str(tmpl.get("kind") or ""),
                "name": obj_name,
                "namespace": ns,
            }
        }

    def subscription(
        obj_name: str,
        on: str,
        subscriber: Any,
        reply: Any = None,
        delivery: Any = None,
    ) -> dict[str, Any]:
        sub_spec: dict[str, Any] = {
            "channel": {k: v for k, v in ref(on)["ref"].items() if k != "namespace"},
            "subscriber": subscriber,
        }
        if reply is not None:
            sub_spec["reply"] = reply
        if delivery is not None:
            sub_spec["delivery"] = delivery
        return {
            "apiVersion": SUBSCRIPTION_API,
            "kind": "Subscription",
            "metadata": metadata(obj_name, True),
            "spec": sub_spec,
        }

    out: list[dict[str, Any]] = []
    if kind == "Sequence":
        steps = spec.get("steps") if isinstance(spec.get("steps"), list) else []
        assert isinstance(steps, list)
        for i, step in enumerate(steps):
            step = step if isinstance(step, Mapping) else {}
            out.append(channel(sequence_channel(name, i)))
            last = i == len(steps) - 1
            out.append(
                subscription(
                    sequence_channel(name, i),
                    sequence_channel(name, i),
                    _destination(step),
                    spec.get("reply") if last else ref(sequence_channel(name, i + 1)),
                    step.get("delivery"),
                )
            )
    elif kind == "Parallel":
        branches = spec.get("branches") if isinstance(spec.get("branches"), list) else []
        assert isinstance(branches, list)
        out.append(channel(parallel_ingress(name)))
        for i, branch in enumerate(branches):
            branch = branch if isinstance(branch, Mapping) else {}
            out.append(channel(parallel_branch(name, i)))
            if branch.get("filter") is not None:
                out.append(
                    subscription(
                        parallel_filter(name, i),
                        parallel_ingress(name),
                        _destination(branch["filter"]),
                        ref(parallel_branch(name, i)),
                    )
                )
            else:
                out.append(
                    subscription(
                        parallel_filter(name, i),
                        parallel_ingress(name),
                        ref(parallel_branch(name, i)),
                    )
                )
            out.append(
                subscription(
                    parallel_branch(name, i),
                    parallel_branch(name, i),
                    _destination(branch.get("subscriber")),
                    branch.get("reply") if branch.get("reply") is not None else spec.get("reply"),
                    branch.get("delivery"),
                )
            )
    return tuple(out)


def _destination(raw: Any) -> Any:
    """A step or filter as a Destination (a step also carries its delivery: not part of it)."""
    if not isinstance(raw, Mapping):
        return raw
    return {k: v for k, v in raw.items() if k != "delivery"}


# --- address resolution --------------------------------------------------------------------------


class LocalResolver:
    """Resolves refs to the channels and flows of this compilation, then asks `fallback` (the
    Kubernetes resolver), if any."""

    def __init__(
        self,
        addresses: Mapping[tuple[str, str, str], str],
        fallback: resolve.Resolver | None,
    ) -> None:
        self.addresses = addresses  # (group, kind, namespace, name) without the version
        self.fallback = fallback

    def resolve(self, ref: Mapping[str, Any], namespace: str) -> str:
        group = str(ref.get("apiVersion") or "").split("/")[0]
        kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        ns = str(ref.get("namespace") or namespace)
        url = self.addresses.get((f"{group}/{kind}", ns, name))
        if url is not None:
            return url
        if self.fallback is not None:
            return self.fallback.resolve(ref, namespace)
        if (group, kind) == ("eventing.knative.dev", "Broker"):
            raise resolve.ResolveError(f'Broker "{ns}/{name}" does not exist')
        if (group, kind) in _LOCAL_KINDS:
            raise resolve.ResolveError(f'{kind} "{ns}/{name}" does not exist')
        raise resolve.ResolveError(
            f"cannot resolve ref to {ref.get('apiVersion')}/{kind} {name!r}: only Broker refs and "
            "absolute URIs resolve in standalone mode (and refs to channels, Sequences and "
            "Parallels)"
        )


_LOCAL_KINDS = frozenset(
    {("flows.knative.dev", "Sequence"), ("flows.knative.dev", "Parallel")}
    | {("messaging.knative.dev", k) for k in channels.KINDS}
)


# --- compilation ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    """What `prepare` found: every channel and Subscription to compile (hand-written and internal),
    the flows, and the manifests of internal objects (for `kbroker get -o yaml`)."""

    channels: dict[tuple[str, str], Obj] = field(default_factory=dict)
    subscriptions: dict[tuple[str, str], Obj] = field(default_factory=dict)
    internal: set[tuple[str, str, str]] = field(default_factory=set)  # (kind, ns, name)
    blocked: dict[tuple[str, str, str], str] = field(default_factory=dict)  # flow key -> why
    given: dict[str, dict[tuple[str, str], Obj]] = field(default_factory=dict)


def _owned_by(o: Obj, kind: str, name: str) -> bool:
    refs = o.meta.get("ownerReferences")
    if not isinstance(refs, list):
        return False
    return any(
        isinstance(r, Mapping) and r.get("kind") == kind and r.get("name") == name for r in refs
    )


def prepare(c: Compilation) -> Plan:
    """Expand every flow, merge with the hand-written objects, and install the `LocalResolver`
    (before anything resolves a Destination). Call once, right after indexing."""
    plan = Plan()
    for kind, table in c.channels.items():
        for key, o in table.items():
            if kind != channels.GENERIC and key in c.channels[channels.GENERIC]:
                generic = c.channels[channels.GENERIC][key]
                if _owned_by(o, channels.GENERIC, o.name):
                    continue  # a generic Channel's backing channel (Kubernetes): compiled with it
                c.problem(
                    o,
                    o.source,
                    "metadata.name",
                    f"Channel {key[0]}/{key[1]} (in "
                    f"{generic.source}) has the same name: this {kind} is ignored",
                    "error",
                )
                continue
            plan.channels[key] = o
    plan.subscriptions.update(c.subscriptions)
    for kind, table in (("Sequence", c.sequences), ("Parallel", c.parallels)):
        for (ns, _), flow in sorted(table.items()):
            for manifest in expand(flow.raw, channels.default_template(c, ns)):
                _add_internal(plan, kind, flow, manifest)
    addresses: dict[tuple[str, str, str], str] = {}
    for (ns, name), o in plan.channels.items():
        url = channels.address(c, ns, name)
        addresses[(f"messaging.knative.dev/{o.kind}", ns, name)] = url
        backing = _backing_kind(c, o)
        if backing:
            addresses[(f"messaging.knative.dev/{backing}", ns, name)] = url
    for kind, table in (("Sequence", c.sequences), ("Parallel", c.parallels)):
        for ns, name in table:
            url = channels.address(c, ns, flow_address_channel(kind, name))
            addresses[(f"flows.knative.dev/{kind}", ns, name)] = url
    c.env = dataclasses.replace(c.env, resolver=LocalResolver(addresses, c.env.resolver))
    return plan


def _add_internal(plan: Plan, kind: str, flow: Obj, manifest: dict[str, Any]) -> None:
    """One manifest of `expand` into the plan, unless an object not owned by the flow has its
    name (the flow is then blocked) or Kubernetes already holds the flow's own copy."""
    ns, m_name = flow.namespace, str(manifest["metadata"]["name"])
    m_kind = str(manifest["kind"])
    is_channel = m_kind != "Subscription"
    target = plan.channels if is_channel else plan.subscriptions
    existing = target.get((ns, m_name))
    if existing is not None:
        if _owned_by(existing, kind, flow.name):
            plan.internal.add((existing.kind, ns, m_name))
        else:
            what = existing.kind
            plan.blocked.setdefault(
                (kind, ns, flow.name),
                f"{what} {ns}/{m_name} exists and is not owned by this {kind}",
            )
        return
    if is_channel and m_kind not in channels.KINDS:
        # A template of a kind no backend runs: a generic Channel of that template fails with
        # the reason, which the flow's channel statuses then show.
        template = {k: manifest[k] for k in ("apiVersion", "kind")}
        manifest = {
            **manifest,
            "kind": channels.GENERIC,
            "apiVersion": channels.CHANNEL_API,
            "spec": {"channelTemplate": template},
        }
        m_kind = channels.GENERIC
    target[(ns, m_name)] = Obj(m_kind, ns, m_name, flow.source, manifest)
    plan.internal.add((m_kind, ns, m_name))


def _backing_kind(c: Compilation, o: Obj) -> str:
    if o.kind != channels.GENERIC:
        return ""
    spec = o.spec if isinstance(o.spec, Mapping) else {}
    tmpl = spec.get("channelTemplate") or channels.default_template(c, o.namespace)
    kind = tmpl.get("kind") if isinstance(tmpl, Mapping) else None
    return str(kind) if kind in channels.BACKING_KINDS else ""


@dataclass(frozen=True, slots=True)
class Compiled:
    """The contract entries of channels and Subscriptions, and the objects statuses are about."""

    channels: tuple[contract.Broker, ...]
    subscriptions: tuple[contract.Trigger, ...]
    given: Mapping[str, Mapping[tuple[str, str], Obj]]


def compile_flows(c: Compilation, plan: Plan, addresses: Mapping[tuple[str, str], str]) -> Compiled:
    """Channels, Subscriptions and flows -> entries; every status lands in `c.statuses`.
    `addresses` are the owned Brokers' (for Broker refs)."""
    given: dict[str, dict[tuple[str, str], Obj]] = {}
    outcomes: dict[tuple[str, str], ChannelOutcome] = {}
    for key, o in sorted(plan.channels.items()):
        out = channels.compile_channel(c, o, addresses)
        outcomes[key] = out
        given.setdefault(o.kind, {})[key] = o
        backing = channels.backing_status(out)
        if backing is not None:
            c.statuses[(backing.kind, *key)] = backing
            given.setdefault(backing.kind, {})[key] = Obj(
                backing.kind, o.namespace, o.name, o.source, _backing_manifest(o, backing.kind)
            )
    entries: list[contract.Trigger] = []
    per_channel: dict[tuple[str, str], list[tuple[str, int, status.ObjectStatus]]] = {}
    for key, o in sorted(plan.subscriptions.items()):
        entry = subscriptions.compile_subscription(c, o, outcomes, addresses)
        given.setdefault("Subscription", {})[key] = o
        if entry is not None:
            entries.append(entry)
        st = c.statuses[("Subscription", *key)]
        spec = o.spec if isinstance(o.spec, Mapping) else {}
        ref = spec.get("channel")
        if isinstance(ref, Mapping) and (o.namespace, str(ref.get("name"))) in outcomes:
            per_channel.setdefault((o.namespace, str(ref.get("name"))), []).append(
                (o.uid(), o.generation, st)
            )
    for key, out in outcomes.items():
        c.statuses[(out.obj.kind, *key)] = channels.with_subscribers(
            out.status, per_channel.get(key, [])
        )
    for kind, table in (("Sequence", c.sequences), ("Parallel", c.parallels)):
        for key, flow in sorted(table.items()):
            given.setdefault(kind, {})[key] = flow
            c.statuses[(kind, *key)] = flow_status(c, flow, plan)
    return Compiled(
        channels=tuple(o.entry for _, o in sorted(outcomes.items()) if o.entry is not None),
        subscriptions=tuple(entries),
        given=given,
    )


def _backing_manifest(o: Obj, kind: str) -> dict[str, Any]:
    api = channels.BACKING_KINDS[kind][0]
    spec = o.spec if isinstance(o.spec, Mapping) else {}
    tmpl = spec.get("channelTemplate") if isinstance(spec.get("channelTemplate"), Mapping) else {}
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {
            "name": o.name,
            "namespace": o.namespace,
            "ownerReferences": [
                {
                    "apiVersion": channels.CHANNEL_API,
                    "kind": channels.GENERIC,
                    "name": o.name,
                    "controller": True,
                }
            ],
        },
        "spec": dict((tmpl or {}).get("spec") or {}),
    }


# --- flow status ---------------------------------------------------------------------------------


def _ready_of(c: Compilation, kind: str, ns: str, name: str, what: str) -> dict[str, Any]:
    st = c.statuses.get((kind, ns, name))
    ready = st.condition(status.READY) if st is not None else None
    if ready is None:
        return {
            "type": "Ready",
            "status": status.UNKNOWN,
            "reason": "NoReady",
            "message": f"{what} does not have Ready condition",
        }
    out = {"type": "Ready", "status": ready.status}
    if ready.reason:
        out["reason"] = ready.reason
    if ready.message:
        out["message"] = ready.message
    return out


def _channel_ref(c: Compilation, plan: Plan, ns: str, name: str) -> tuple[str, dict[str, Any]]:
    o = plan.channels.get((ns, name))
    kind = o.kind if o is not None else ""
    api = str(o.raw.get("apiVersion") or "") if o is not None else ""
    return kind, {"apiVersion": api, "kind": kind, "name": name, "namespace": ns}


def _sub_ref(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": SUBSCRIPTION_API, "kind": "Subscription", "name": name, "namespace": ns}


def flow_status(c: Compilation, flow: Obj, plan: Plan) -> status.ObjectStatus:
    """A Sequence's or Parallel's status from its internal objects' statuses."""
    ns, name, kind = flow.namespace, flow.name, flow.kind
    issues = flows_validate.check(flow.raw)
    c.report(flow, issues)
    n = _count(flow)
    chan_names: list[str]
    extra: list[tuple[str, Any]] = []
    sub_names: list[str]
    if kind == "Sequence":
        chan_names = [sequence_channel(name, i) for i in range(n)]
        sub_names = list(chan_names)
        chan_rows = []
        for ch in chan_names:
            ck, ref = _channel_ref(c, plan, ns, ch)
            chan_rows.append({"channel": ref, "ready": _ready_of(c, ck, ns, ch, "Channel")})
        sub_rows = [
            {
                "subscription": _sub_ref(ns, s),
                "ready": _ready_of(c, "Subscription", ns, s, "Subscription"),
            }
            for s in sub_names
        ]
        extra += [("channelStatuses", chan_rows), ("subscriptionStatuses", sub_rows)]
    else:
        chan_names = [parallel_ingress(name)] + [parallel_branch(name, i) for i in range(n)]
        sub_names = [
            s for i in range(n) for s in (parallel_filter(name, i), parallel_branch(name, i))
        ]
        ik, iref = _channel_ref(c, plan, ns, parallel_ingress(name))
        ist = c.statuses.get((ik, ns, parallel_ingress(name)))
        ingress_ready = (
            {"type": "Ready", "status": status.TRUE}
            if ist is not None and ist.address_url
            else {
                "type": "Ready",
                "status": status.FALSE,
                "reason": "NotAddressable",
                "message": "Channel is not addressable",
            }
        )
        branches = []
        for i in range(n):
            bk, bref = _channel_ref(c, plan, ns, parallel_branch(name, i))
            branches.append(
                {
                    "filterSubscriptionStatus": {
                        "subscription": _sub_ref(ns, parallel_filter(name, i)),
                        "ready": _ready_of(
                            c, "Subscription", ns, parallel_filter(name, i), "Subscription"
                        ),
                    },
                    "filterChannelStatus": {
                        "channel": bref,
                        "ready": _ready_of(c, bk, ns, parallel_branch(name, i), "Channel"),
                    },
                    "subscriberSubscriptionStatus": {
                        "subscription": _sub_ref(ns, parallel_branch(name, i)),
                        "ready": _ready_of(
                            c, "Subscription", ns, parallel_branch(name, i), "Subscription"
                        ),
                    },
                }
            )
        extra += [
            ("ingressChannelStatus", {"channel": iref, "ready": ingress_ready}),
            ("branchStatuses", branches),
        ]
    # Sequence marks what is not ready yet Unknown, Parallel False (as Knative does).
    pending = status.unknown if kind == "Sequence" else status.false
    blocked = plan.blocked.get((kind, ns, name))
    chan_why = _not_ready(
        [(ch, c.statuses.get((_channel_ref(c, plan, ns, ch)[0], ns, ch))) for ch in chan_names]
    )
    sub_why = _not_ready([(s, c.statuses.get(("Subscription", ns, s))) for s in sub_names])
    if issues.errors:
        first = issues.errors[0]
        channels_cond = status.false(
            "ChannelsReady", first.reason, "; ".join(str(i) for i in issues.errors)
        )
    elif blocked is not None:
        channels_cond = status.false("ChannelsReady", "ChannelsNotOwned", blocked)
    elif chan_why is None:
        channels_cond = status.true("ChannelsReady")
    else:
        channels_cond = pending(
            "ChannelsReady",
            "ChannelsNotReady",
            "Channels are not ready yet, or there are none" + chan_why,
        )
    if sub_why is None:
        subs_cond = status.true("SubscriptionsReady")
    else:
        subs_cond = pending(
            "SubscriptionsReady",
            "SubscriptionsNotReady",
            "Subscriptions are not ready yet, or there are none" + sub_why,
        )
    first_channel = flow_address_channel(kind, name)
    fk, _ = _channel_ref(c, plan, ns, first_channel)
    fst = c.statuses.get((fk, ns, first_channel))
    url = fst.address_url if fst is not None and not issues.errors else None
    addressable = (
        status.true("Addressable")
        if url
        else pending("Addressable", "emptyAddress", "addressable is nil")
    )
    conditions = status.with_ready(
        FLOW_CONDITIONS,
        {
            "ChannelsReady": channels_cond,
            "SubscriptionsReady": subs_cond,
            "Addressable": addressable,
            "EventPoliciesReady": status.true(
                "EventPoliciesReady", status.REASON_OIDC_DISABLED_BROKER
            ),
        },
    )
    return status.ObjectStatus(
        kind=kind,
        namespace=ns,
        name=name,
        generation=flow.generation,
        conditions=conditions,
        address_url=url,
        address_ca_certs=c.env.ingress_ca_certs,
        warnings=tuple(str(i) for i in issues.items if i.severity == "warning"),
        extra=tuple(extra),
    )


def _not_ready(items: list[tuple[str, status.ObjectStatus | None]]) -> str | None:
    """None when every object is Ready (and there is one), else what to add to the message:
    the first one that is not, and why (Knative's message alone does not say which)."""
    if not items:
        return ""
    for name, st in items:
        if st is None:
            return f" ({name}: not created)"
        if not st.ready:
            why = st.conditions[0].message if st.conditions else ""
            return f" ({name}: {why})" if why else f" ({name})"
    return None


def _count(flow: Obj) -> int:
    spec = flow.spec if isinstance(flow.spec, Mapping) else {}
    items = spec.get("steps" if flow.kind == "Sequence" else "branches")
    return len(items) if isinstance(items, list) else 0
