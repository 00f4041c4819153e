"""GET /status: Brokers and Triggers with Knative-shaped status, for `kbroker get` and humans.

Objects come out the way `kubectl get -o json` shows them (apiVersion, kind, metadata, status), so
scripts written against Knative's status fields read ours unchanged. The process's own condition
that no Knative object carries (a config folder that cannot be read, so the last good configuration
stays in force; removed Brokers whose events are still kept) is a separate top-level `config`.
"""

from __future__ import annotations

import datetime
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kbroker.controller import compile as compiler
from kbroker.controller import files
from kbroker.core import metrics
from kbroker.core.contract_source import ContractHolder
from kbroker.filter.pool import WorkerPool

API_VERSION = "eventing.knative.dev/v1"


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
    storage_errors: dict[str, str]
    holder: ContractHolder
    pool: WorkerPool
    metrics: metrics.Metrics


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
    lags: dict[tuple[str, str], int] = {}
    for worker in src.pool.workers.values():
        try:
            lags[(worker.trigger.namespace, worker.trigger.name)] = await worker.subscription.lag()
        except Exception:  # lag is best effort: a backend hiccup must not break /status
            continue
    triggers_by_key = {(t.namespace, t.name): t for t in src.holder.current.triggers}
    brokers, triggers = [], []
    for (kind, ns, name), st in sorted(result.statuses.items()):
        status = st.to_k8s()
        obj: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": {"namespace": ns, "name": name, "generation": st.generation},
            "status": status,
        }
        if kind == "Broker":
            error = src.storage_errors.get(f"{ns}/{name}")
            if error:
                _mark_storage_failed(status, error)
            brokers.append(obj)
        else:
            t = triggers_by_key.get((ns, name))
            if t is not None:
                obj["spec"] = {"broker": t.broker}
            if (ns, name) in lags:
                status.setdefault("annotations", {})["kbroker.dev/lag"] = str(lags[(ns, name)])
            triggers.append(obj)
    return {
        "brokers": brokers,
        "triggers": triggers,
        "problems": [*src.folder.health.errors, *(str(p) for p in result.problems)],
        "generation": src.holder.current.generation,
        "config": config_status(src),
    }


def _mark_storage_failed(status: dict[str, Any], error: str) -> None:
    for cond in status.get("conditions", []):
        if cond.get("type") in ("Ready", "TriggerChannelReady"):
            cond.update(status="False", reason="StorageNotReady", message=error)


def routes(src: StatusSource) -> list[BaseRoute]:
    async def status(_: Request) -> Response:
        body = orjson.dumps(await snapshot(src), option=orjson.OPT_INDENT_2)
        return Response(body, media_type="application/json")

    async def prometheus(_: Request) -> Response:
        states = []
        for worker in src.pool.workers.values():
            t = worker.trigger
            try:
                lag: int | None = await worker.subscription.lag()
            except Exception:  # best effort, as in /status
                lag = None
            states.append(
                metrics.TriggerState(t.namespace, t.name, t.broker, lag, worker.in_flight())
            )
        src.metrics.refresh(states)
        return Response(src.metrics.render(), media_type=metrics.CONTENT_TYPE)

    return [Route("/status", status), Route("/metrics", prometheus)]
