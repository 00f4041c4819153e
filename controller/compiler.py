"""Broker and Trigger objects -> one contract plus Knative status: the pure core of the controller.

Both modes call `compile` with every object they know (the standalone folder watcher with the
YAML it loaded, the Kubernetes controller with its informers' caches) and get back the contract
for the data plane, a status per Broker/Trigger, and the problems found. It is level-based: the
same objects always give the same result, so a caller simply recompiles on every change.

This module is the entry point and holds the result types; the rules of each kind live in
`brokers` and `triggers`, and what one compilation knows (the `Environment` among it) in
`compilation`, re-exported here so callers need only this module. Whatever the kind:
- An object that is not Ready is not in the contract.
- One bad object never affects another: it gets a status and problems, the rest compiles.
- The contract's generation goes up only when its content changes.

What this module refuses: I/O, clocks, and Kubernetes clients. Resolution of references other
than Brokers goes through the `Resolver` in the `Environment`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kbroker.controller import (
    audiences,
    brokers,
    eventpolicies,
    features,
    flows,
    flows_validate,
    kube_only,
    pingsources,
    status,
    validate,
)
from kbroker.controller.compilation import (
    EVENTING_API,
    Compilation,
    Environment,
    Key,
    Problem,
    SourcedObject,
)
from kbroker.controller.triggers import TriggerCompiler
from kbroker.core import contract

__all__ = [
    "EVENTING_API",
    "CompileResult",
    "Environment",
    "Key",
    "Problem",
    "SourcedObject",
    "compile",
    "validate_update",
]


def validate_update(old: Mapping[str, Any], new: Mapping[str, Any], **kwargs: Any) -> list[str]:
    """Why `new` may not replace `old`: Knative's immutable fields of every kind we read."""
    return [
        *validate.validate_update(old, new, **kwargs),
        *flows_validate.validate_update(old, new),
    ]


@dataclass(frozen=True, slots=True)
class CompileResult:
    contract: contract.Contract
    statuses: dict[Key, status.ObjectStatus]
    problems: tuple[Problem, ...]
    # The object each status is about, as given (what `kbroker get -o yaml` shows as written).
    objects: Mapping[Key, Mapping[str, Any]] = field(default_factory=dict)


def compile(
    objects: Sequence[SourcedObject], env: Environment, previous: contract.Contract | None = None
) -> CompileResult:
    """The contract, statuses and problems for this set of objects (see the module docstring)."""
    c = Compilation(env)
    c.index(objects)
    c.load_defaults()
    plan = flows.prepare(c)  # before anything resolves: refs to channels and flows resolve
    oidc = features.load(c)
    policies = eventpolicies.compile_policies(c, oidc)
    owned = brokers.owned(c)
    addresses = {key: c.address(*key) for key in owned}
    outcomes: dict[tuple[str, str], brokers.BrokerOutcome] = {}
    for key, cls in owned.items():
        outcome = brokers.compile_broker(c, c.brokers[key], cls, addresses)
        outcome = eventpolicies.apply(outcome, policies, oidc)
        outcomes[key] = outcome
        c.statuses[("Broker", *key)] = outcome.status
    flow_entries = flows.compile_flows(c, plan, addresses)
    tc = TriggerCompiler(c, addresses)
    triggers = [
        t for key, o in sorted(c.triggers.items()) if (t := tc.compile(o, outcomes)) is not None
    ]
    if oidc is not None:
        triggers = [audiences.with_audiences(c, t, owned) for t in triggers]
    sources = [
        p
        for o in (c.pingsources[k] for k in sorted(c.pingsources))
        if (p := pingsources.compile_pingsource(c, o, addresses)) is not None
    ]
    kube_only.report(c)
    content = contract.Contract(
        generation=0,
        brokers=(
            *(o.entry for _, o in sorted(outcomes.items()) if o.entry is not None),
            *flow_entries.channels,
        ),
        triggers=(*triggers, *flow_entries.subscriptions),
        oidc=oidc,
        sources=tuple(sources),
    )
    if previous is None:
        generation = 1
    elif dataclasses.replace(previous, generation=0) == content:
        generation = previous.generation
    else:
        generation = previous.generation + 1
    given: dict[str, Mapping[tuple[str, str], Any]] = {
        "Broker": c.brokers,
        "Trigger": c.triggers,
        "EventPolicy": c.eventpolicies,
        "PingSource": c.pingsources,
        **flow_entries.given,
        "ApiServerSource": c.apiserversources,
        "SinkBinding": c.sinkbindings,
    }
    return CompileResult(
        contract=dataclasses.replace(content, generation=generation),
        statuses=dict(sorted(c.statuses.items())),
        objects={(k, ns, n): given[k][(ns, n)].raw for k, ns, n in sorted(c.statuses)},
        problems=tuple(
            sorted(
                c.problems, key=lambda p: (p.source, p.kind, p.namespace, p.name, p.field, p.reason)
            )
        ),
    )
