"""The RabbitmqBrokerConfig informer without its CRD (the controller must not wait for it) and
with it (an ordinary informer), and the connection ConfigMaps a config names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kbroker.controller.kube import rabbitmq
from kbroker.controller.kube.api import KubeError, Obj

PATH = rabbitmq.CONFIGS.path()


class Client:
    """404 for the config resource until `installed`; then one config and an idle watch."""

    def __init__(self) -> None:
        self.installed = False
        self.gets = 0

    async def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None,
        body: Any = None, content_type: str = "application/json",
    ) -> Obj:  # fmt: skip
        assert path == PATH
        self.gets += 1
        if not self.installed:
            raise KubeError(404, "the server could not find the requested resource")
        item = {"metadata": {"namespace": "ns", "name": "rmq", "resourceVersion": "1"}}
        return {"metadata": {"resourceVersion": "1"}, "items": [item]}

    async def watch(self, path: str, rv: str, timeout_seconds: int) -> AsyncIterator[Obj]:
        await asyncio.Event().wait()
        yield {}

    async def close(self) -> None:
        pass


async def test_absent_crd_is_synced_and_empty_then_picked_up() -> None:
    client = Client()
    changes: list[Obj | None] = []
    informer = rabbitmq.ConfigInformer(client, rabbitmq.CONFIGS, changes.append)
    informer.absent_retry = 0.05
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 2)
        assert informer.items == {}
        client.installed = True  # the CRD is installed later: the informer lists it
        for _ in range(100):
            if informer.items:
                break
            await asyncio.sleep(0.02)
        assert list(informer.items) == [("ns", "rmq")]
        assert informer.items[("ns", "rmq")]["kind"] == "RabbitmqBrokerConfig"
        assert None in changes  # a (re)list tells the controller to reconcile
    finally:
        task.cancel()


def test_connection_refs() -> None:
    def cfg(ns: str, cluster: Any) -> Obj:
        return {"metadata": {"namespace": ns, "name": "c"},
                "spec": {"rabbitmqClusterReference": cluster}}  # fmt: skip

    configs = [
        cfg("a", {"connectionSecret": {"name": "conn"}}),
        cfg("a", {"namespace": "shared", "connectionSecret": {"name": "conn2"}}),
        cfg("b", {"name": "cluster"}),  # the --rabbitmq server: no ConfigMap
        cfg("c", "not a mapping"),
        {"metadata": {"namespace": "d", "name": "c"}},
    ]
    assert rabbitmq.connection_refs(configs) == {("a", "conn"), ("shared", "conn2")}
