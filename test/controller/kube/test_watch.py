"""Informer, resolver and contract store against a scripted KubeClient: 410, discovery, 409.

A real API server rarely compacts within a test, so "the watch's resourceVersion expired" is
scripted here; everything else about watches is exercised against the real server in
test_reconciler.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import pytest
from kbroker.controller.kube.api import BROKERS, KubeError, Obj
from kbroker.controller.kube.contract_map import CONTRACT_KEY, Conflict, ContractStore
from kbroker.controller.kube.resolve import KubeResolver
from kbroker.controller.kube.watch import Informer
from kbroker.controller.resolve import ResolveError
from kbroker.core import contract


def obj(name: str, rv: str) -> Obj:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv}}


class Scripted:
    """Answers GETs from `objects` by path and plays `watches` in order, one script per watch."""

    def __init__(self, objects: Mapping[str, Any], watches: list[list[Any]] | None = None) -> None:
        self.objects = dict(objects)
        self.watches = watches or []
        self.calls: list[tuple[str, str]] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        self.calls.append((method, path))
        found = self.objects.get(path)
        if isinstance(found, KubeError):
            raise found
        if found is None:
            raise KubeError(404, "not found")
        result: Obj = found() if callable(found) else found
        return result

    async def watch(
        self, path: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[Obj]:
        self.calls.append(("WATCH", resource_version))
        if not self.watches:
            await asyncio.Event().wait()  # nothing more: block like an idle watch
        for step in self.watches.pop(0):
            if isinstance(step, KubeError):
                raise step
            yield step

    async def close(self) -> None:
        return None


async def test_informer_resumes_relists_on_410_and_backs_off_on_errors() -> None:
    lists = iter(
        [
            {"metadata": {"resourceVersion": "10"}, "items": [obj("a", "9")]},
            {"metadata": {"resourceVersion": "30"}, "items": [obj("c", "29")]},
        ]
    )
    client = Scripted(
        {BROKERS.path(): lambda: next(lists)},
        [
            [{"type": "ADDED", "object": obj("b", "11")}],  # server closes: resume from 11
            [
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
                KubeError(500, "boom"),
            ],
            [{"type": "DELETED", "object": obj("a", "13")}],
            [{"type": "ERROR", "object": {"code": 410, "message": "too old"}}],
        ],
    )
    changes: list[str] = []
    informer = Informer(
        client,
        BROKERS,
        lambda o: changes.append(o["metadata"]["name"] if o else "LIST"),
        backoff=(0.01, 0.02),
    )
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(2):
            while informer.relists < 2 or client.calls[-1][0] != "WATCH":
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    watched_from = [rv for m, rv in client.calls if m == "WATCH"]
    assert watched_from == ["10", "11", "12", "13", "30"]
    assert changes == ["LIST", "b", "a", "LIST"]
    assert list(informer.items) == [("ns", "c")]
    assert informer.items[("ns", "c")]["kind"] == "Broker"  # list items get their kind back


async def test_resolver_discovers_plurals_and_reports_why_not() -> None:
    thing = {"status": {"address": {"url": "http://thing/"}}}
    client = Scripted(
        {
            "/apis/x.dev/v1": {
                "resources": [
                    {"name": "mice/status", "kind": "Mouse"},
                    {"name": "mice", "kind": "Mouse"},
                ]
            },
            "/apis/x.dev/v1/namespaces/ns/mice/m": thing,
            "/apis/x.dev/v1/namespaces/ns/mice/bare": {"status": {}},
            "/api/v1/namespaces/ns/services/s": {"spec": {"ports": [{"port": 81}]}},
            "/apis/y.dev/v1": KubeError(404, "no group"),
            "/apis/y.dev/v1/namespaces/ns/geese/g": thing,
        }
    )
    r = KubeResolver(client)
    pre = await r.prefetch(
        [
            ({"apiVersion": "x.dev/v1", "kind": "Mouse", "name": "m"}, "ns"),
            ({"apiVersion": "x.dev/v1", "kind": "Mouse", "name": "bare"}, "ns"),
            ({"apiVersion": "x.dev/v1", "kind": "Mouse", "name": "gone"}, "ns"),
            ({"apiVersion": "v1", "kind": "Service", "name": "s"}, "ns"),
            ({"apiVersion": "y.dev/v1", "kind": "Goose", "name": "g"}, "ns"),
            ({"kind": "Mouse", "name": "incomplete"}, "ns"),
        ]
    )
    assert (
        pre.resolve({"apiVersion": "x.dev/v1", "kind": "Mouse", "name": "m"}, "ns")
        == "http://thing/"
    )
    assert pre.resolve({"apiVersion": "v1", "kind": "Service", "name": "s"}, "ns") == (
        "http://s.ns.svc.cluster.local:81/"
    )
    # Discovery failed for y.dev: the guessed plural "gooses" is wrong, and says not found.
    with pytest.raises(ResolveError, match="not found"):
        pre.resolve({"apiVersion": "y.dev/v1", "kind": "Goose", "name": "g"}, "ns")
    with pytest.raises(ResolveError, match="not addressable"):
        pre.resolve({"apiVersion": "x.dev/v1", "kind": "Mouse", "name": "bare"}, "ns")
    with pytest.raises(ResolveError, match="not found"):
        pre.resolve({"apiVersion": "x.dev/v1", "kind": "Mouse", "name": "gone"}, "ns")
    with pytest.raises(ResolveError, match="not looked up"):
        pre.resolve({"kind": "Mouse", "name": "incomplete"}, "ns")
    assert sum(1 for _, p in client.calls if p == "/apis/x.dev/v1") == 1  # discovery cached


class Recording(Scripted):
    """Also records writes; a write answers from `writes` in order (an Obj or a KubeError)."""

    def __init__(self, objects: Mapping[str, Any], writes: list[Any]) -> None:
        super().__init__(objects)
        self.writes = writes
        self.bodies: list[tuple[str, Any]] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        if method == "GET":
            return await super().request(method, path)
        self.bodies.append((method, body))
        answer = self.writes.pop(0)
        if isinstance(answer, KubeError):
            raise answer
        result: Obj = answer
        return result


async def test_contract_store_creates_replaces_and_reloads_after_a_conflict() -> None:
    cm_path = "/api/v1/namespaces/sys/configmaps/kbroker-contract"
    theirs = contract.Contract(generation=41)
    client = Recording(
        {cm_path: KubeError(404, "absent")},
        [
            {"metadata": {"resourceVersion": "5"}},
            KubeError(409, "conflict"),
        ],
    )
    store = ContractStore(client, "sys", "kbroker-contract")
    assert await store.load() is None
    await store.write(contract.Contract(generation=1))
    assert client.bodies[0][0] == "POST"
    assert "resourceVersion" not in client.bodies[0][1]["metadata"]

    client.objects[cm_path] = {
        "metadata": {"resourceVersion": "9"},
        "data": {CONTRACT_KEY: theirs.to_json().decode()},
    }
    with pytest.raises(Conflict):
        await store.write(contract.Contract(generation=2))
    method, body = client.bodies[1]
    assert (method, body["metadata"]["resourceVersion"]) == ("PUT", "5")  # optimistic
    assert store.current == theirs  # the next compile continues from their generation
    assert orjson.loads(body["data"][CONTRACT_KEY])["generation"] == 2
