"""GET /status: Brokers and Triggers with Knative-shaped status, for `kbroker get` and humans.

Objects come out the way `kubectl get -o json` shows them (apiVersion, kind, metadata, status), so
scripts written against Knative's status fields read ours unchanged.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kbroker.controller import compile as compiler
from kbroker.core.contract_source import ContractHolder
from kbroker.filter.pool import WorkerPool

API_VERSION = "eventing.knative.dev/v1"


class StatusSource(Protocol):
    result: compiler.CompileResult | None
    storage_errors: dict[str, str]
    holder: ContractHolder
    pool: WorkerPool


async def snapshot(src: StatusSource) -> dict[str, Any]:
    result = src.result
    if result is None:
        return {"brokers": [], "triggers": [], "problems": []}
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
        "problems": [str(p) for p in result.problems],
        "generation": src.holder.current.generation,
    }


def _mark_storage_failed(status: dict[str, Any], error: str) -> None:
    for cond in status.get("conditions", []):
        if cond.get("type") in ("Ready", "TriggerChannelReady"):
            cond.update(status="False", reason="StorageNotReady", message=error)


def routes(src: StatusSource) -> list[BaseRoute]:
    async def status(_: Request) -> Response:
        body = orjson.dumps(await snapshot(src), option=orjson.OPT_INDENT_2)
        return Response(body, media_type="application/json")

    return [Route("/status", status)]
