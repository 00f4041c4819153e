"""RabbitMQBroker in cluster mode, on the real kube-apiserver and the real RabbitMQ node.

    kubectl ──> kube-apiserver: ConfigMap (uri) + RabbitmqBrokerConfig + Broker(RabbitMQBroker)
                     ^ watch                                   + Trigger (parallelism annotation)
                kbroker controller --rabbitmq URL ──> contract file, exchange on RabbitMQ
    producer ──POST──> kbroker ingress ──> RabbitMQ exchange ──> queue ──> kbroker filter ──> sink

Ingress and filter run as local processes reading the controller's contract file (no kubelet
here), as in test_reconciler.py. Checked: the Broker and Trigger become Ready, events flow through
RabbitMQ (the exchange and the trigger's queue exist on the server, with the config's queue type),
the parallelism annotation sets the trigger's in-flight bound, the URL comes from the ConfigMap the
config names (or from --rabbitmq for a RabbitmqCluster reference), a missing connection ConfigMap
keeps the Broker not Ready with the reason, and deleting the Broker deletes its exchange.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiormq
import httpx
import pytest
from fixtures.kube import Kube
from fixtures.subscriber import SinkServer
from kbroker.core import events as ce

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")
pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(240)]


def _spawn(name: str, args: list[str], root: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    log = root / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "kbroker", *args, "--log-level", "info"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    deadline = time.monotonic() + 30
    while not (m := re.search(rf"kbroker {name} ready on (\S+)", log.read_text(errors="replace"))):
        if popen.poll() is not None or time.monotonic() > deadline:
            popen.kill()
            pytest.fail(f"{name} did not start: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    return popen, m.group(1), log


class Plane:
    def __init__(self, kube: Kube, root: Path, ingress: str, logs: list[Path]) -> None:
        self.kube, self.root, self.ingress, self.logs = kube, root, ingress, logs

    @property
    def contract(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.root / "contract.json").read_text())
        return doc

    async def apply(self, ns: str, text: str) -> None:
        await asyncio.to_thread(self.kube.kubectl, "apply", "-n", ns, "-f", "-", stdin=text)

    async def get(self, ns: str, kind: str, name: str) -> dict[str, Any] | None:
        proc = await asyncio.to_thread(
            self.kube.run_kubectl, "get", "-n", ns, kind, name, "-o", "json"
        )
        if proc.returncode != 0:
            assert "NotFound" in proc.stderr, proc.stderr
            return None
        found: dict[str, Any] = json.loads(proc.stdout)
        return found

    async def until(self, check: Callable[[], Awaitable[T | None]], what: str, t: float = 60) -> T:
        deadline = time.monotonic() + t
        while True:
            value = await check()
            if value:
                return value
            if time.monotonic() > deadline:
                tail = self.logs[-1].read_text(errors="replace")[-3000:]
                pytest.fail(f"timed out waiting for {what}; controller log:\n{tail}")
            await asyncio.sleep(0.2)

    async def ready(self, ns: str, kind: str, name: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            obj = await self.get(ns, kind, name)
            st = (obj or {}).get("status") or {}
            ok = any(
                c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", ())
            )
            return obj if ok else None

        return await self.until(check, f"{kind} {ns}/{name} Ready")

    async def not_ready(self, ns: str, kind: str, name: str, words: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            obj = await self.get(ns, kind, name)
            for c in ((obj or {}).get("status") or {}).get("conditions", ()):
                if c["type"] == "Ready" and c["status"] != "True" and words in c.get("message", ""):
                    return c  # type: ignore[no-any-return]
            return None

        return await self.until(check, f"{kind} {ns}/{name} not Ready: {words}")


@pytest.fixture(scope="module")
def plane(
    kube: Kube, rabbitmq_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Plane]:
    root = tmp_path_factory.mktemp("rmq-cluster")
    kube.kubectl("apply", "-f", str(ROOT / "config" / "100-namespace.yaml"))
    kube.kubectl(
        "wait", "--for=condition=Established", "crd/rabbitmqbrokerconfigs.eventing.knative.dev"
    )
    data_plane = ["--contract", str(root / "contract.json"), "--port", "0", "--data",
                  str(root / "data"), "--poll", "0.1"]  # fmt: skip
    procs = []
    try:
        ingress, ingress_url, ingress_log = _spawn("ingress", ["ingress", *data_plane], root)
        procs.append(ingress)
        filter_, filter_url, filter_log = _spawn("filter", ["filter", *data_plane], root)
        procs.append(filter_)
        controller, _, controller_log = _spawn(
            "controller",
            ["controller", "--kubeconfig", str(kube.kubeconfig), "--port", "0",
             "--data", str(root / "data"), "--contract-file", str(root / "contract.json"),
             "--ingress-url", ingress_url, "--data-plane", ingress_url, "--data-plane", filter_url,
             "--resync", "1", "--finalize-timeout", "4", "--rabbitmq", rabbitmq_url],
            root,
        )  # fmt: skip
        procs.append(controller)
        yield Plane(kube, root, ingress_url, [ingress_log, filter_log, controller_log])
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


async def _on_server(url: str, kind: str, name: str) -> dict[str, Any] | None:
    """The queue's or exchange's declare-ok (passive), or None when the server has no such one."""
    conn = await aiormq.connect(url)
    try:
        ch = await conn.channel()
        try:
            if kind == "queue":
                ok = await ch.queue_declare(name, passive=True)
                return {"messages": ok.message_count}
            await ch.exchange_declare(name, passive=True)
            return {}
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
    finally:
        await conn.close()


def _yaml(ns: str, uri: str) -> str:
    return f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: rmq-conn}}
data: {{uri: "{uri}"}}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: RabbitmqBrokerConfig
metadata: {{name: rmq}}
spec:
  queueType: classic
  rabbitmqClusterReference:
    connectionSecret: {{name: rmq-conn}}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: orders
  annotations: {{eventing.knative.dev/broker.class: RabbitMQBroker}}
spec:
  config:
    apiVersion: eventing.knative.dev/v1alpha1
    kind: RabbitmqBrokerConfig
    name: rmq
    namespace: {ns}
"""


def _trigger(name: str, broker: str, sink: str) -> str:
    return f"""
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: {name}
  annotations: {{rabbitmq.eventing.knative.dev/parallelism: "7"}}
spec:
  broker: {broker}
  subscriber: {{uri: "{sink}"}}
"""


async def _send(url: str, n: int) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(n)]
    async with httpx.AsyncClient(timeout=10.0) as http:
        for eid in ids:
            headers, body = ce.encode_binary(
                ce.CloudEvent(
                    {"specversion": "1.0", "id": eid, "source": "/kube", "type": "t"}, b"{}"
                )
            )
            resp = await http.post(url, content=body, headers=headers)
            assert resp.status_code == 202, resp.text
    return ids


async def test_rabbitmq_broker_from_a_config_and_its_configmap(
    plane: Plane, kube: Kube, sinks: SinkServer, rabbitmq_url: str
) -> None:
    ns = await asyncio.to_thread(kube.namespace, "rmq")
    sink = sinks.sink("rmq")
    await plane.apply(ns, _yaml(ns, rabbitmq_url) + "---" + _trigger("audit", "orders", sink.url))
    await plane.ready(ns, "broker", "orders")
    await plane.ready(ns, "trigger", "audit")

    contract = plane.contract
    [broker] = [b for b in contract["brokers"] if b["namespace"] == ns]
    [trigger] = [t for t in contract["triggers"] if t["namespace"] == ns]
    assert broker["channel"] == "rabbitmq"
    assert broker["channelConfig"]["queueType"] == "classic"
    assert trigger["maxInFlight"] == 7  # rabbitmq.eventing.knative.dev/parallelism
    status = json.dumps((await plane.get(ns, "broker", "orders") or {}).get("status"))
    assert "guest" not in status and "amqp://" not in status  # the URL stays out of the status

    ids = await _send(f"{plane.ingress}/{ns}/orders", 20)
    await sink.wait_for(20, timeout=30)
    assert sorted(sink.ids()) == sorted(ids)
    exchange = broker["topic"]
    assert await _on_server(rabbitmq_url, "exchange", exchange) is not None
    queue = trigger["consumerGroup"] or f"knative-trigger-{ns}-audit"
    assert await _on_server(rabbitmq_url, "queue", queue) is not None

    # deleting the Broker deletes its exchange (the controller's finalizer)
    await asyncio.to_thread(kube.kubectl, "delete", "-n", ns, "broker", "orders", "--wait=false")

    async def gone() -> bool:
        return await plane.get(ns, "broker", "orders") is None and (
            await _on_server(rabbitmq_url, "exchange", exchange) is None
        )

    await plane.until(gone, "broker and exchange deleted")


async def test_cluster_reference_uses_the_flag_and_missing_configmap_is_not_ready(
    plane: Plane, kube: Kube, sinks: SinkServer, rabbitmq_url: str
) -> None:
    ns = await asyncio.to_thread(kube.namespace, "rmq")
    sink = sinks.sink("rmq-flag")
    await plane.apply(
        ns,
        f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: by-flag
  annotations: {{eventing.knative.dev/broker.class: RabbitMQBroker}}
spec:
  config: {{apiVersion: rabbitmq.com/v1beta1, kind: RabbitmqCluster, name: any}}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: RabbitmqBrokerConfig
metadata: {{name: nowhere}}
spec:
  rabbitmqClusterReference:
    connectionSecret: {{name: absent}}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: lost
  annotations: {{eventing.knative.dev/broker.class: RabbitMQBroker}}
spec:
  config: {{apiVersion: eventing.knative.dev/v1alpha1, kind: RabbitmqBrokerConfig, name: nowhere}}
---
{_trigger("t", "by-flag", sink.url)}
""",
    )
    await plane.ready(ns, "broker", "by-flag")
    await plane.ready(ns, "trigger", "t")
    ids = await _send(f"{plane.ingress}/{ns}/by-flag", 5)
    await sink.wait_for(5, timeout=30)
    assert sorted(sink.ids()) == sorted(ids)
    await plane.not_ready(ns, "broker", "lost", f"connectionSecret {ns}/absent not found")
    # the ConfigMap appears: the Broker becomes Ready without any change to it
    cm = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: absent}\ndata: {uri: "%s"}\n'
    await plane.apply(ns, cm % "")
    await plane.not_ready(ns, "broker", "lost", "has no `uri`")
    await plane.apply(ns, cm % rabbitmq_url)
    await plane.ready(ns, "broker", "lost")
