"""GET /status: Brokers, Triggers, workflows and the rest with Knative-shaped status, for
`kbroker get` and humans.

Objects come out the way `kubectl get -o json` shows them: the object as written (apiVersion, kind,
metadata with labels and annotations, the whole spec) plus its status, so scripts written against
Knative's objects read ours unchanged. `lastTransitionTime` is when the condition last changed, from
`controller.transitions` (fed by `observe` after every compile), never the time of the request.
The process's own condition that no Knative object carries (a config folder that cannot be read, so
the last good configuration stays in force; removed Brokers whose events are still kept) is a
separate top-level `config`.

What this module refuses: showing a spec other than the one written (defaults and resolved values
belong in status), and stamping times itself.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kbroker.controller import compiler, files, status, transitions
from kbroker.core import contract
from kbroker.core.channel import Channel, broker_problem
from kbroker.core.contract_source import ContractHolder
from kbroker.core.outcome_merge import summary_doc
from kbroker.filter.pool import WorkerPool

API_VERSION = "eventing.knative.dev/v1"
# Workflow kinds -> the list /status shows them in (`kbroker get <list>`).
FLOW_LISTS = {
    "Channel": "channels",
    "InMemoryChannel": "channels",
    "KafkaChannel": "channels",
    "NatsJetStreamChannel": "channels",
    "Subscription": "subscriptions",
    "Sequence": "sequences",
    "Parallel": "parallels",
}
STATS_KEY = "kbroker.dev/stats"  # a Trigger's delivery counts in its status; no Knative field


class _Watched(Protocol):
    @property
    def health(self) -> files.Health: ...


class _Retiring(Protocol):
    @property
    def pending(self) -> tuple[str, ...]: ...


class StatusSource(Protocol):
    @property
    def folder(self) -> _Watched: ...

    @property
    def retirement(self) -> _Retiring: ...

    result: compiler.CompileResult | None

    @property
    def channels(self) -> Mapping[str, Channel]: ...

    storage_errors: dict[str, str]
    conditions: transitions.ConditionTimes
    holder: ContractHolder
    pool: WorkerPool


def config_status(src: StatusSource) -> dict[str, Any]:
    """`readable` false: the folder (or a file) cannot be read and the last good configuration
    is in force; `removedBrokersKept`: removed Brokers whose events wait out the grace period."""
    health = src.folder.health
    out: dict[str, Any] = {"readable": health.ok, "errors": list(health.errors)}
    if health.since is not None:
        since = datetime.datetime.fromtimestamp(health.since, datetime.UTC)
        out["since"] = since.isoformat(timespec="seconds").replace("+00:00", "Z")
    out["removedBrokersKept"] = list(src.retirement.pending)
    return out


async def snapshot(src: StatusSource) -> dict[str, Any]:
    result = src.result
    if result is None:
        return {"brokers": [], "triggers": [], "problems": [], "config": config_status(src)}
    lags: dict[tuple[str, str, str], int] = {}
    for worker in src.pool.workers.values():
        try:
            t = worker.trigger
            lags[(t.kind, t.namespace, t.name)] = await worker.subscription.lag()
        except Exception:  # lag is best effort: a backend hiccup must not break /status
            continue
    recorder = src.pool.dispatcher.recorder
    recorder.retain({(t.namespace, t.name) for t in src.holder.current.triggers})
    stats = recorder.snapshot_all()
    problems = storage_problems(src)
    observe(src, problems)  # a problem found since the last update is a transition now
    brokers: list[dict[str, Any]] = []
    triggers: list[dict[str, Any]] = []
    policies: list[dict[str, Any]] = []
    pings: list[dict[str, Any]] = []
    flows: dict[str, list[dict[str, Any]]] = {k: [] for k in FLOW_LISTS.values()}
    kube_only: list[dict[str, Any]] = []
    for key, st in sorted(result.statuses.items()):
        kind, ns, name = key
        shown = effective(st, problems)
        status_doc = shown.to_k8s(previous=src.conditions.previous(key))
        obj = as_written(result.objects.get(key, {}), kind, ns, name, st.generation)
        obj["status"] = status_doc
        if kind == "Broker":
            brokers.append(obj)
        elif kind == "EventPolicy":
            policies.append(obj)
        elif kind == "PingSource":
            pings.append(obj)
        elif kind in ("ApiServerSource", "SinkBinding"):
            kube_only.append(obj)  # never Ready here: they need Kubernetes
        else:
            if (kind, ns, name) in lags:
                annotations = status_doc.setdefault("annotations", {})
                annotations["kbroker.dev/lag"] = str(lags[(kind, ns, name)])
            if kind == "Trigger" and (ns, name) in stats:
                status_doc[STATS_KEY] = summary_doc(stats[(ns, name)])
            (triggers if kind == "Trigger" else flows[FLOW_LISTS[kind]]).append(obj)
    return {
        "brokers": brokers,
        "triggers": triggers,
        **flows,
        "eventpolicies": policies,
        "pingsources": pings,
        "kubernetesonly": kube_only,
        "problems": [*src.folder.health.errors, *(str(p) for p in result.problems)],
        "generation": src.holder.current.generation,
        "config": config_status(src),
    }


def as_written(
    raw: Mapping[str, Any], kind: str, namespace: str, name: str, generation: int
) -> dict[str, Any]:
    """The object as its YAML said, with what the API server would fill in: namespace,
    generation, and an empty spec when there was none. Copied, never shared with the compiler."""
    doc = orjson.loads(orjson.dumps(dict(raw), default=str, option=orjson.OPT_NON_STR_KEYS))
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    out: dict[str, Any] = {
        "apiVersion": doc.get("apiVersion") or API_VERSION,
        "kind": kind,
        "metadata": {**meta, "namespace": namespace, "name": name, "generation": generation},
        "spec": doc.get("spec") if doc.get("spec") is not None else {},
    }
    for k, v in doc.items():  # fields we do not model are kept, as the API server keeps them
        if k not in out and k != "status":
            out[k] = v
    return out


def effective(st: status.ObjectStatus, storage_errors: Mapping[str, str]) -> status.ObjectStatus:
    """The status as served: a Broker whose storage could not be created, or whose channel
    reports it broken (`storage_problems`), is not Ready, whatever its YAML says (its Triggers
    keep their own conditions)."""
    error = storage_errors.get(f"{st.namespace}/{st.name}") if st.kind == "Broker" else None
    failed = {"Ready", "TriggerChannelReady"}
    if st.kind in FLOW_LISTS and FLOW_LISTS[st.kind] == "channels":
        error = storage_errors.get(contract.channel_key(st.namespace, st.name))
        failed = {"Ready", "DispatcherReady", "BackingChannelReady"}
    if error is None:
        return st
    return dataclasses.replace(
        st,
        conditions=tuple(
            status.false(c.type, "StorageNotReady", error) if c.type in failed else c
            for c in st.conditions
        ),
    )


def storage_problems(src: StatusSource) -> dict[str, str]:
    """Why each Broker's storage cannot serve, by "namespace/name": what creating it said at the
    last configuration change, overridden by what its channel reports now (damage found in a
    running log), so /status shows a problem as soon as the channel knows it."""
    problems = dict(src.storage_errors)
    for broker in src.holder.current.brokers:
        channel = src.channels.get(broker.channel)
        why = None if channel is None else broker_problem(channel, broker)
        if why is not None:
            problems[str(broker.key)] = why
    return problems


def observe(src: StatusSource, problems: Mapping[str, str] | None = None) -> None:
    """Call after every new result: records which conditions changed, and when."""
    if src.result is not None:
        found = storage_problems(src) if problems is None else problems
        src.conditions.observe({k: effective(st, found) for k, st in src.result.statuses.items()})


def routes(src: StatusSource) -> list[BaseRoute]:
    async def status(_: Request) -> Response:
        body = orjson.dumps(await snapshot(src), option=orjson.OPT_INDENT_2)
        return Response(body, media_type="application/json")

    return [Route("/status", status)]
