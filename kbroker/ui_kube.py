"""The console's Objects port on Kubernetes (`kbroker ui`): objects through the API server.

Reads are the API server's Brokers and Triggers with the status the controller wrote; the
contract is the one the controller published in its ConfigMap, reloaded in the background so
the pages see what the data plane runs. Validation is the controller's own compiler, given the
namespace's Brokers and the candidate, so the form says what the controller would say. Writes
create or replace the Trigger through the API server (with the resourceVersion read just
before, so a concurrent edit is a conflict, never lost); the controller reconciles it as any
other Trigger. Every Trigger is editable here: the API server is the source of truth, and GitOps
users copy the YAML instead.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from typing import Any

from kbroker.controller import compiler
from kbroker.controller.kube.api import BROKERS, SERVICES, TRIGGERS, KubeClient, KubeError, Resource
from kbroker.controller.kube.contract_map import ContractStore
from kbroker.core.contract import Contract
from kbroker.core.contract_source import ContractHolder
from kbroker.ui.ports import KObject, Origin
from kbroker.ui.yamlview import written

log = logging.getLogger("kbroker")

KSERVICES = Resource("serving.knative.dev", "v1", "services", "Service")
# Kinds the console lists: its own, and the Addressables offered as subscribers ("ksvc" is a
# Knative Service, which shares its kind name with the core Service).
_RESOURCES = {"Broker": BROKERS, "Trigger": TRIGGERS, "Service": SERVICES, "ksvc": KSERVICES}
CONTRACT_POLL = 2.0  # seconds between reloads of the contract ConfigMap


class KubeObjects:
    def __init__(self, client: KubeClient, store: ContractStore, holder: ContractHolder) -> None:
        self.client = client
        self.store = store
        self.holder = holder

    def contract(self) -> Contract:
        return self.holder.current

    async def follow_contract(self) -> None:
        """Reload the controller's contract until cancelled (errors logged, then retried)."""
        while True:
            try:
                found = await self.store.load()
                if found is not None and found.generation != self.holder.current.generation:
                    await self.holder.publish(found)
            except KubeError as exc:
                log.warning("console: cannot read the contract ConfigMap: %s", exc)
            await asyncio.sleep(CONTRACT_POLL)

    async def list(self, kind: str, namespace: str | None = None) -> builtins.list[KObject]:
        resource = _RESOURCES.get(kind)
        if resource is None:
            return []
        try:
            doc = await self.client.request("GET", resource.path(namespace))
        except KubeError as exc:
            if kind in ("Service", "ksvc") and exc.status in (403, 404):
                return []  # Knative Serving not installed, or not ours to read: no suggestions
            raise
        items = doc.get("items") or []
        for item in items:  # list items carry no kind/apiVersion of their own
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        return sorted(
            items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
        )

    async def get(self, kind: str, namespace: str, name: str) -> KObject | None:
        resource = _RESOURCES.get(kind)
        if resource is None:
            return None
        try:
            obj = await self.client.request("GET", resource.path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        obj.setdefault("kind", kind)
        return obj

    def origin(self, obj: KObject) -> Origin:
        if obj.get("kind") != "Trigger":
            return Origin(False, reason="the console edits Triggers only")
        return Origin(True)

    def validate(self, obj: KObject) -> builtins.list[str]:
        """The compiler's verdict on the candidate beside the Brokers known to the contract."""
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        if not name:
            return ["metadata.name: required"]
        brokers = [
            compiler.SourcedObject(
                {
                    "apiVersion": compiler.EVENTING_API,
                    "kind": "Broker",
                    "metadata": {"namespace": b.namespace, "name": b.name},
                },
                "kubernetes",
            )
            for b in self.holder.current.brokers
        ]
        candidate = compiler.SourcedObject(written(obj), "kubernetes")
        env = compiler.Environment(ingress_base_url="http://kbroker-ingress.invalid")
        result = compiler.compile([*brokers, candidate], env)
        return [
            f"{p.field}: {p.reason}" if p.field else p.reason
            for p in result.problems
            if (p.kind, p.namespace, p.name) == ("Trigger", ns, name) and p.severity == "error"
        ]

    async def apply(self, obj: KObject) -> KObject:
        if obj.get("kind") != "Trigger":
            raise PermissionError("the console writes Triggers only")
        errors = self.validate(obj)
        if errors:
            raise ValueError("; ".join(errors))
        body: dict[str, Any] = written(obj)
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        current = await self.get("Trigger", ns, name)
        if current is None:
            return await self.client.request("POST", TRIGGERS.path(ns), body=body)
        # Keep what the API server and others own (uid, finalizers, other labels' owners).
        meta = {**current.get("metadata", {}), **body["metadata"]}
        body["metadata"] = meta
        return await self.client.request("PUT", TRIGGERS.path(ns, name), body=body)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        if kind != "Trigger":
            raise PermissionError("the console deletes Triggers only")
        with contextlib.suppress(KubeError):
            await self.client.request("DELETE", TRIGGERS.path(namespace, name))
