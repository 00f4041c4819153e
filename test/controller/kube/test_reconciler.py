"""Cluster mode end to end: real kube-apiserver, controller, ingress and filter processes.

    kubectl / kn ──> kube-apiserver (+ etcd) <──watch/patch── kbroker controller ──> ConfigMap
                                                                   │ --contract-file
                                                                   v
    producer ──POST──> kbroker ingress ──> embedded log (shared --data) ──> kbroker filter ──> sink
                          ^ GET /contract-generation (both) before the controller says Ready

Pods cannot run here (no kubelet), so ingress and filter run as local processes reading the
contract file the controller keeps in sync with the ConfigMap, and Brokers' addresses use the
ingress's local URL (--ingress-url), so events really flow. One process set serves the whole
module (start-up costs CPU on 2 cores); each test works in its own namespace. The `kn` tests skip
only when the kn binary has not been built.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fixtures.kube import Kube
from fixtures.subscriber import Sink, SinkServer
from kbroker.controller.kube import client as kube_client
from kbroker.controller.kube.resolve import KubeResolver
from kbroker.core import events as ce

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")

TEST_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.test.kbroker.dev
spec:
  group: test.kbroker.dev
  scope: Namespaced
  names: {kind: Thing, plural: things, singular: thing, listKind: ThingList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@dataclass
class Cluster:
    kube: Kube
    root: Path
    ingress: Proc
    filter: Proc
    controller: Proc | None = None
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10.0))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def contract_file(self) -> Path:
        return self.root / "contract.json"

    def start_controller(self, kubeconfig: Path | None = None) -> None:
        args = [
            "controller",
            "--kubeconfig",
            str(kubeconfig or self.kube.kubeconfig),
            "--port",
            "0",
            "--data",
            str(self.data),
            "--contract-file",
            str(self.contract_file),
            "--ingress-url",
            self.ingress.url,
            "--data-plane",
            self.ingress.url,
            "--data-plane",
            self.filter.url,
            "--resync",
            "1",
            "--finalize-timeout",
            "4",
        ]
        self.controller = spawn("controller", args, self.root)
        deadline = time.monotonic() + 30
        while not self.contract_file.exists():  # the first reconcile wrote the contract
            if self.controller.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"controller wrote no contract: {self.controller.tail()}")
            time.sleep(0.05)

    def kill_controller(self) -> None:
        if self.controller is not None and self.controller.popen.poll() is None:
            self.controller.popen.send_signal(signal.SIGKILL)
            self.controller.popen.wait(10)

    async def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return await asyncio.to_thread(self.kube.kubectl, *args, stdin=stdin)

    async def apply(self, ns: str, text: str) -> None:
        await self.kubectl("apply", "-n", ns, "-f", "-", stdin=text)

    async def get(self, ns: str, kind: str, name: str) -> dict[str, Any] | None:
        proc = await asyncio.to_thread(
            self.kube.run_kubectl, "get", "-n", ns, kind, name, "-o", "json"
        )
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            pytest.fail(proc.stderr)
        found: dict[str, Any] = json.loads(proc.stdout)
        return found

    async def condition(self, ns: str, kind: str, name: str, ctype: str = "Ready") -> Any:
        obj = await self.get(ns, kind, name)
        for c in ((obj or {}).get("status") or {}).get("conditions") or ():
            if c["type"] == ctype:
                return c
        return None

    async def until(self, check: Callable[[], Awaitable[T | None]], what: str, t: float = 30) -> T:
        deadline = time.monotonic() + t
        while True:
            for p in (self.ingress, self.filter, self.controller):
                if p is not None and p.popen.poll() is not None:
                    pytest.fail(f"{p.name} exited: {p.tail()}")
            value = await check()
            if value:
                return value
            if time.monotonic() > deadline:
                tail = self.controller.tail() if self.controller else ""
                pytest.fail(f"timed out waiting for {what}; controller log:\n{tail}")
            await asyncio.sleep(0.1)

    async def ready(self, ns: str, kind: str, name: str, t: float = 30) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            obj = await self.get(ns, kind, name)
            st = (obj or {}).get("status") or {}
            ok = any(
                c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", ())
            )
            fresh = (
                obj is not None and st.get("observedGeneration") == obj["metadata"]["generation"]
            )
            return obj if ok and fresh else None

        return await self.until(check, f"{kind} {ns}/{name} Ready", t)

    async def reason(self, ns: str, kind: str, name: str, reason: str, ctype: str = "Ready") -> Any:
        async def check() -> Any:
            c = await self.condition(ns, kind, name, ctype)
            return c if c and c["status"] != "True" and c.get("reason") == reason else None

        return await self.until(check, f"{kind} {ns}/{name} {ctype} reason {reason}")

    async def send(self, url: str, etype: str, eid: str | None = None) -> httpx.Response:
        event = ce.CloudEvent(
            {
                "specversion": "1.0",
                "id": eid or uuid.uuid4().hex,
                "source": "test/kube",
                "type": etype,
            },
            b"{}",
        )
        headers, body = ce.encode_binary(event)
        return await self.http.post(url, content=body, headers=headers)

    async def deliver(self, url: str, etype: str, sink: Sink) -> None:
        """One event, sent right after Ready, must arrive: Ready includes the start position."""
        before = len(sink.received)
        resp = await self.send(url, etype)
        assert resp.status_code == 202, resp.text
        await sink.wait_for(before + 1, timeout=10)
        assert sink.events[-1].type == etype


def spawn(name: str, args: list[str], root: Path, timeout: float = 30.0) -> Proc:
    n = len(list(root.glob(f"{name}-*.log"))) + 1
    log = root / f"{name}-{n}.log"  # one per start: a restart must not find the old ready line
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "kbroker", *args, "--log-level", "info"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    proc = Proc(name, popen, log)
    deadline = time.monotonic() + timeout
    while not (m := re.search(rf"kbroker {name} ready on (\S+)", proc.tail())):
        if popen.poll() is not None or time.monotonic() > deadline:
            popen.kill()
            pytest.fail(f"{name} did not start: {proc.tail()}")
        time.sleep(0.05)
    proc.url = m.group(1)
    return proc


def stop(proc: Proc | None) -> None:
    if proc is not None and proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(10)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(5)


@pytest.fixture(scope="module")
def cluster(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    kube.kubectl("apply", "-f", str(ROOT / "config" / "100-namespace.yaml"))
    kube.kubectl("apply", "-f", "-", stdin=TEST_CRD)
    kube.kubectl("wait", "--for=condition=Established", "crd/things.test.kbroker.dev")
    data_plane = [
        "--contract",
        str(root / "contract.json"),
        "--port",
        "0",
        "--data",
        str(root / "data"),
        "--poll",
        "0.1",
    ]
    ingress = spawn("ingress", ["ingress", *data_plane], root)
    filter_ = spawn("filter", ["filter", *data_plane], root)
    c = Cluster(kube, root, ingress, filter_)
    try:
        c.start_controller()
        yield c
    finally:
        for p in (c.controller, filter_, ingress):
            stop(p)


@pytest.fixture
async def plane(cluster: Cluster, sinks: SinkServer) -> AsyncIterator[Cluster]:
    yield cluster
    await cluster.http.aclose()
    cluster.http = httpx.AsyncClient(timeout=10.0)  # a new loop per test


def broker_url(c: Cluster, ns: str, name: str) -> str:
    return f"{c.ingress.url}/{ns}/{name}"


# Shaped like Knative's docs (eventing/brokers/broker-types/channel-based-broker, triggers).
DOCS_YAML = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  annotations:
    eventing.knative.dev/broker.class: MTChannelBasedBroker
spec:
  config:
    apiVersion: v1
    kind: ConfigMap
    name: config-br-default-channel
    namespace: knative-eventing
  delivery:
    retry: 2
    backoffPolicy: exponential
    backoffDelay: PT0.1S
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: my-service-trigger
spec:
  broker: default
  filter:
    attributes:
      type: dev.knative.foo.bar
  subscriber:
    uri: {sink}
"""


async def test_docs_yaml_becomes_ready_and_events_flow(plane: Cluster, sinks: SinkServer) -> None:
    sink = sinks.sink("docs")
    ns = plane.kube.namespace("docs")
    await plane.apply(ns, DOCS_YAML.replace("{sink}", sink.url))

    broker = await plane.ready(ns, "broker", "default")
    url = broker_url(plane, ns, "default")
    assert broker["status"]["address"] == {"name": "http", "url": url}
    assert broker["metadata"]["finalizers"] == ["kbroker.dev/broker"]
    trigger = await plane.ready(ns, "trigger", "my-service-trigger")
    assert trigger["status"]["subscriberUri"] == sink.url
    types = {c["type"]: c["status"] for c in trigger["status"]["conditions"]}
    assert types == dict.fromkeys(
        [
            "Ready",
            "BrokerReady",
            "SubscriberResolved",
            "DeadLetterSinkResolved",
            "SubscriptionReady",
            "DependencyReady",
            "OIDCIdentityCreated",
        ],
        "True",
    )
    listed = await plane.kubectl("get", "-n", ns, "brokers")
    assert re.search(rf"default\s+{re.escape(url)}\s+\S+\s+True", listed), listed

    await plane.deliver(url, "dev.knative.foo.bar", sink)
    assert (await plane.send(url, "other.type")).status_code == 202
    assert (await plane.send(url, "dev.knative.foo.bar", "last")).status_code == 202
    await sink.wait_for(2)
    await asyncio.sleep(0.3)
    assert {e.type for e in sink.events} == {"dev.knative.foo.bar"}
    assert sink.events[-1].id == "last"

    cm = json.loads(
        await plane.kubectl(
            "get", "-n", "kbroker-system", "configmap", "kbroker-contract", "-o", "json"
        )
    )
    served = json.loads(cm["data"]["contract.json"])
    assert served == json.loads(plane.contract_file.read_text())
    assert [b["name"] for b in served["brokers"] if b["namespace"] == ns] == ["default"]


def needs_kn(kube: Kube) -> None:
    if not kube.kn_path.exists():
        pytest.skip(f"kn is not built ({kube.kn_path} missing): run `bash hack/kube.sh build`")


async def test_kn_broker_and_trigger_commands(plane: Cluster, sinks: SinkServer) -> None:
    needs_kn(plane.kube)
    sink = sinks.sink("kn")
    ns = plane.kube.namespace("kn")

    async def kn(*args: str) -> str:
        return await asyncio.to_thread(plane.kube.kn, *args, "-n", ns)

    assert "successfully created" in await kn("broker", "create", "kb")
    await plane.ready(ns, "broker", "kb")
    url = broker_url(plane, ns, "kb")
    assert (await kn("broker", "describe", "kb", "-o", "url")).strip() == url
    described = await kn("broker", "describe", "kb")
    assert url in described and "Ready" in described
    listed = await kn("broker", "list")
    assert re.search(rf"kb\s+{re.escape(url)}\s+.*True", listed), listed

    await kn(
        "trigger", "create", "kt", "--broker", "kb", "--sink", sink.url, "--filter", "type=kn.t"
    )
    await plane.ready(ns, "trigger", "kt")
    listed = await kn("trigger", "list")
    assert re.search(r"kt\s+kb\s+\S+\s+.*True", listed), listed
    described = await kn("trigger", "describe", "kt")
    assert sink.url in described and "Ready" in described

    await plane.deliver(url, "kn.t", sink)

    # kn's update commands change delivery and filters in place; observedGeneration follows.
    assert "updated" in await kn("broker", "update", "kb", "--retry", "3")
    assert "updated" in await kn("trigger", "update", "kt", "--filter", "type=kn.u")
    broker = await plane.ready(ns, "broker", "kb")
    assert broker["status"]["observedGeneration"] == 2
    trigger = await plane.ready(ns, "trigger", "kt")
    assert trigger["status"]["observedGeneration"] == 2
    await plane.deliver(url, "kn.u", sink)
    await kn("trigger", "delete", "kt")
    await kn("broker", "delete", "kb")
    await plane.until(lambda: _gone(plane, ns, "broker", "kb"), "kn-deleted Broker gone")


async def _gone(plane: Cluster, ns: str, kind: str, name: str) -> bool:
    return await plane.get(ns, kind, name) is None


TRIGGER = """
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: {name}
spec:
  broker: {broker}
  filter:
    attributes:
      type: {type}
  subscriber:
    uri: {sink}
"""

BROKER = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: {name}
"""


async def readiness_lines(plane: Cluster, ns: str, trigger: str, until: str) -> list[str]:
    """The controller's readiness lines about one Trigger, once one starts with `until`."""
    assert plane.controller is not None
    log = plane.controller.log
    for _ in range(100):
        said = [
            line.split("kbroker.controller.readiness: ", 1)[1]
            for line in log.read_text(errors="replace").splitlines()
            if "kbroker.controller.readiness: " in line
            and f" namespace={ns} trigger={trigger} " in f"{line} "
        ]
        if said and said[-1].startswith(until):
            return said
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {until!r} line for {ns}/{trigger}: {plane.controller.tail()}")


async def test_trigger_before_broker_then_filter_change(plane: Cluster, sinks: SinkServer) -> None:
    sink = sinks.sink("early")
    ns = plane.kube.namespace("order")
    trig = TRIGGER.format(name="t", broker="late", type="a.type", sink=sink.url)
    await plane.apply(ns, trig)
    cond = await plane.reason(ns, "trigger", "t", "BrokerDoesNotExist")
    assert 'Broker "late" does not exist' in cond["message"]

    await plane.apply(ns, BROKER.format(name="late"))
    await plane.ready(ns, "trigger", "t")
    # One readiness line per change, however many reconciles ran meanwhile.
    said = await readiness_lines(plane, ns, "t", until="trigger ready")
    assert said[0].startswith("trigger not ready") and "reason=BrokerDoesNotExist" in said[0]
    assert len([s for s in said if "BrokerDoesNotExist" in s]) == 1
    assert said[-1].startswith("trigger ready") and "broker=late" in said[-1]
    url = broker_url(plane, ns, "late")
    await plane.deliver(url, "a.type", sink)

    await plane.apply(ns, trig.replace("a.type", "b.type"))
    t = await plane.ready(ns, "trigger", "t")
    assert t["status"]["observedGeneration"] == 2
    count = len(sink.received)
    await plane.send(url, "a.type")
    await plane.send(url, "b.type", "b")
    await sink.wait_for(count + 1)
    await asyncio.sleep(0.3)
    assert [e.id for e in sink.events[count:]] == ["b"]


async def test_ready_only_once_the_data_plane_serves_it(plane: Cluster, sinks: SinkServer) -> None:
    sink = sinks.sink("gate")
    ns = plane.kube.namespace("gate")
    plane.filter.popen.send_signal(signal.SIGSTOP)  # a filter that never reads the new contract
    try:
        await plane.apply(ns, BROKER.format(name="b"))
        await plane.apply(ns, TRIGGER.format(name="t", broker="b", type="g", sink=sink.url))
        cond = await plane.reason(ns, "trigger", "t", "DataPlaneNotReady")
        assert "contract generation" in cond["message"]
        sub = await plane.condition(ns, "trigger", "t", "SubscriberResolved")
        assert sub["status"] == "True"
    finally:
        plane.filter.popen.send_signal(signal.SIGCONT)
    await plane.ready(ns, "trigger", "t")
    await plane.deliver(broker_url(plane, ns, "b"), "g", sink)

    # A data plane that stays silent delays a Broker's deletion (--finalize-timeout), no more.
    plane.filter.popen.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        await plane.kubectl("delete", "-n", ns, "broker", "b", "--timeout=30s")
        assert time.monotonic() - started > 3.0
    finally:
        plane.filter.popen.send_signal(signal.SIGCONT)


async def test_deleting_a_broker_removes_storage_and_unreadies_triggers(
    plane: Cluster, sinks: SinkServer
) -> None:
    sink = sinks.sink("del")
    ns = plane.kube.namespace("del")
    await plane.apply(ns, BROKER.format(name="gone"))
    await plane.apply(ns, TRIGGER.format(name="t", broker="gone", type="x", sink=sink.url))
    await plane.ready(ns, "trigger", "t")
    await plane.deliver(broker_url(plane, ns, "gone"), "x", sink)
    storage = sorted(plane.data.glob(f"knative-broker-{ns}-gone.db*"))
    assert storage, list(plane.data.iterdir())

    await plane.kubectl("delete", "-n", ns, "broker", "gone", "--timeout=20s")
    assert [p for p in storage if p.exists()] == []
    await plane.reason(ns, "trigger", "t", "BrokerDoesNotExist")
    resp = await plane.send(broker_url(plane, ns, "gone"), "x")
    assert resp.status_code == 404


@pytest.mark.kafka
async def test_kafka_class_broker_uses_a_topic_and_deletes_it(
    plane: Cluster, sinks: SinkServer, kafka_bootstrap: str
) -> None:
    """Knative Kafka broker YAML (class Kafka, spec.config: kafka-broker-config), real Kafka."""
    from confluent_kafka.admin import AdminClient

    sink = sinks.sink("kafka")
    ns = plane.kube.namespace("kafka")
    await plane.apply(
        ns,
        f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: kafka-broker-config}}
data:
  bootstrap.servers: "{kafka_bootstrap}"
  default.topic.partitions: "2"
  default.topic.replication.factor: "1"
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: kb
  annotations: {{eventing.knative.dev/broker.class: Kafka}}
spec:
  config: {{apiVersion: v1, kind: ConfigMap, name: kafka-broker-config}}
"""
        + "---"
        + TRIGGER.format(name="t", broker="kb", type="k", sink=sink.url),
    )
    broker = await plane.ready(ns, "broker", "kb", t=60)
    topic = f"knative-broker-{ns}-kb"
    assert broker["status"]["annotations"]["default.topic"] == topic
    assert broker["status"]["annotations"]["bootstrap.servers"] == kafka_bootstrap
    await plane.ready(ns, "trigger", "t", t=60)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    meta = await asyncio.to_thread(admin.list_topics, topic, 10)
    assert len(meta.topics[topic].partitions) == 2
    await plane.deliver(broker_url(plane, ns, "kb"), "k", sink)

    await plane.kubectl("delete", "-n", ns, "broker", "kb", "--timeout=60s")
    meta = await asyncio.to_thread(admin.list_topics, None, 10)
    assert topic not in meta.topics
    await plane.reason(ns, "trigger", "t", "BrokerDoesNotExist")


async def test_subscriber_refs_service_addressable_relative_and_missing(
    plane: Cluster, sinks: SinkServer
) -> None:
    sink = sinks.sink("thing")
    ns = plane.kube.namespace("refs")
    await plane.apply(ns, BROKER.format(name="b"))
    await plane.apply(
        ns,
        """
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80}]
""",
    )
    base = sink.url.rsplit("/", 1)[0]

    def trig(name: str, ref: str, uri: str = "") -> str:
        return f"""
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: {name}}}
spec:
  broker: b
  subscriber:
    ref: {ref}
    {f"uri: {uri}" if uri else ""}
"""

    thing = "{apiVersion: test.kbroker.dev/v1, kind: Thing, name: sinky}"
    await plane.apply(
        ns,
        trig("to-svc", "{apiVersion: v1, kind: Service, name: svc}")
        + "---"
        + trig("to-web", "{apiVersion: v1, kind: Service, name: web}", "/hook")
        + "---"
        + trig("to-thing", thing, "/thing")
        + "---"
        + trig("to-nothing", "{apiVersion: v1, kind: Service, name: nothing}"),
    )
    t = await plane.ready(ns, "trigger", "to-svc")
    assert t["status"]["subscriberUri"] == f"http://svc.{ns}.svc.cluster.local:8080/"
    t = await plane.ready(ns, "trigger", "to-web")
    assert t["status"]["subscriberUri"] == f"http://web.{ns}.svc.cluster.local/hook"
    cond = await plane.reason(
        ns, "trigger", "to-nothing", "Unable to get the Subscriber's URI", "SubscriberResolved"
    )
    assert "not found" in cond["message"]
    cond = await plane.reason(
        ns, "trigger", "to-thing", "Unable to get the Subscriber's URI", "SubscriberResolved"
    )

    # The Addressable appears later, with its address: the Trigger resolves on the next resync.
    await plane.apply(
        ns,
        f"""
apiVersion: test.kbroker.dev/v1
kind: Thing
metadata: {{name: sinky}}
status:
  address: {{url: "{base}/ignored"}}
""",
    )
    t = await plane.ready(ns, "trigger", "to-thing")
    assert t["status"]["subscriberUri"] == sink.url
    await plane.deliver(broker_url(plane, ns, "b"), "any.type", sink)


async def test_invalid_objects_get_conditions_and_never_block_valid_ones(
    plane: Cluster, sinks: SinkServer
) -> None:
    sink = sinks.sink("valid")
    ns = plane.kube.namespace("bad")
    await plane.apply(
        ns,
        BROKER.format(name="good")
        + """
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: slow}
spec:
  delivery: {backoffDelay: soon, retry: 1}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: two-dialects}
spec:
  broker: good
  filters:
    - {exact: {type: a}, prefix: {type: b}}
  subscriber: {uri: http://127.0.0.1:9/}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: relative}
spec:
  broker: good
  subscriber: {uri: /no-host}
"""
        + "---"
        + TRIGGER.format(name="fine", broker="good", type="ok", sink=sink.url),
    )
    await plane.ready(ns, "trigger", "fine")
    cond = await plane.reason(ns, "broker", "slow", "InvalidDelivery")
    assert "backoffDelay" in cond["message"]
    cond = await plane.reason(ns, "trigger", "two-dialects", "InvalidFilter")
    assert "multiple dialects" in cond["message"]
    await plane.reason(ns, "trigger", "relative", "Unable to get the Subscriber's URI")
    await plane.deliver(broker_url(plane, ns, "good"), "ok", sink)

    # spec.config is immutable: the change is reported and the accepted version keeps serving.
    await plane.kubectl(
        "patch",
        "-n",
        ns,
        "broker",
        "good",
        "--type=merge",
        "-p",
        '{"spec":{"config":{"apiVersion":"v1","kind":"ConfigMap","name":"other"}}}',
    )
    cond = await plane.reason(ns, "broker", "good", "ImmutableFieldChanged")
    assert "spec.config" in cond["message"]
    count = len(sink.received)
    assert (await plane.send(broker_url(plane, ns, "good"), "ok")).status_code == 202
    await sink.wait_for(count + 1)
    await plane.ready(ns, "trigger", "fine")


async def test_foreign_classes_are_left_alone_and_br_defaults_apply(plane: Cluster) -> None:
    ns = plane.kube.namespace("classes")
    defaults = f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: config-br-defaults, namespace: kbroker-system}}
data:
  default-br-config: |
    clusterDefault:
      brokerClass: MTChannelBasedBroker
      delivery: {{retry: 10, backoffPolicy: exponential, backoffDelay: PT0.2S}}
    namespaceDefaults:
      {ns}:
        brokerClass: SomeoneElse
"""
    await plane.kubectl("apply", "-f", "-", stdin=defaults)
    try:
        await plane.apply(
            ns,
            BROKER.format(name="unannotated")
            + """---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: ours
  annotations: {eventing.knative.dev/broker.class: MTChannelBasedBroker}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: theirs
  annotations: {eventing.knative.dev/broker.class: OtherVendorBroker}
"""
            + "---"
            + TRIGGER.format(
                name="on-theirs", broker="theirs", type="x", sink="http://127.0.0.1:9/"
            ),
        )
        await plane.ready(ns, "broker", "ours")
        await asyncio.sleep(1.5)  # more reconciles (resync is 1 s): still nothing written
        for kind, name in (
            ("broker", "unannotated"),
            ("broker", "theirs"),
            ("trigger", "on-theirs"),
        ):
            obj = await plane.get(ns, kind, name)
            assert obj is not None
            assert "status" not in obj, (name, obj.get("status"))
            assert "finalizers" not in obj["metadata"]
    finally:
        await plane.kubectl("delete", "-n", "kbroker-system", "configmap", "config-br-defaults")
    # Without the namespace default the unannotated Broker falls back to MTChannelBasedBroker.
    await plane.ready(ns, "broker", "unannotated")


async def test_source_like_sink_ref_to_a_broker_resolves_to_its_address(
    plane: Cluster, sinks: SinkServer
) -> None:
    sink = sinks.sink("src")
    ns = plane.kube.namespace("src")
    await plane.apply(ns, BROKER.format(name="default"))
    await plane.apply(ns, TRIGGER.format(name="t", broker="default", type="ping", sink=sink.url))
    await plane.ready(ns, "trigger", "t")
    # What a Knative source does with spec.sink: resolve the ref as an Addressable, POST there.
    await plane.apply(
        ns,
        """
apiVersion: test.kbroker.dev/v1
kind: Thing
metadata: {name: ping}
spec:
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
""",
    )
    source = await plane.get(ns, "thing", "ping")
    assert source is not None
    ref = source["spec"]["sink"]["ref"]
    client = await kube_client.connect(plane.kube.kubeconfig)
    try:
        url = await KubeResolver(client).lookup(ref["apiVersion"], ref["kind"], ns, ref["name"])
    finally:
        await client.close()
    assert url == broker_url(plane, ns, "default")
    await plane.deliver(url, "ping", sink)


async def test_controller_killed_mid_reconcile_converges_after_restart(plane: Cluster) -> None:
    ns = plane.kube.namespace("crash")
    before = json.loads(plane.contract_file.read_text())["generation"]
    names = [f"t{i}" for i in range(25)]
    many = "---".join(
        TRIGGER.format(name=n, broker="b", type="x", sink="http://127.0.0.1:9/") for n in names
    )
    await plane.apply(ns, BROKER.format(name="b") + "---" + many)
    await asyncio.sleep(0.4)  # the controller is compiling, writing or patching by now
    plane.kill_controller()
    plane.start_controller()

    async def all_ready() -> bool:
        listed = json.loads(await plane.kubectl("get", "-n", ns, "triggers", "-o", "json"))
        ready = {
            t["metadata"]["name"]
            for t in listed["items"]
            for c in (t.get("status") or {}).get("conditions", ())
            if c["type"] == "Ready" and c["status"] == "True"
        }
        return ready == set(names)

    await plane.until(all_ready, "every Trigger Ready after the restart", 60)
    await plane.ready(ns, "broker", "b")
    after = json.loads(plane.contract_file.read_text())
    assert after["generation"] > before
    mine = [t["name"] for t in after["triggers"] if t["namespace"] == ns]
    assert sorted(mine) == sorted(names)
    # Level-based: a restart with nothing changed writes no new generation.
    plane.kill_controller()
    plane.start_controller()
    await asyncio.sleep(2.0)
    assert json.loads(plane.contract_file.read_text())["generation"] == after["generation"]


async def test_controller_needs_no_more_than_the_shipped_rbac(
    plane: Cluster, sinks: SinkServer
) -> None:
    """Run as the kbroker-controller ServiceAccount of config/200-rbac.yaml, not as an admin."""
    sink = sinks.sink("rbac")
    await plane.kubectl("apply", "-f", str(ROOT / "config" / "200-rbac.yaml"))
    token = (
        await plane.kubectl("create", "token", "kbroker-controller", "-n", "kbroker-system")
    ).strip()
    config = json.loads(plane.kube.kubeconfig.read_text())
    config["users"] = [{"name": "kbroker-admin", "user": {"token": token}}]
    sa_kubeconfig = plane.root / "sa-kubeconfig"
    sa_kubeconfig.write_text(json.dumps(config))
    denied = await asyncio.to_thread(
        plane.kube.run_kubectl,
        "--token",
        token,
        "auth",
        "can-i",
        "create",
        "configmaps",
        "-n",
        "default",
    )
    assert denied.stdout.strip() == "no"

    plane.kill_controller()
    plane.start_controller(sa_kubeconfig)
    try:
        ns = plane.kube.namespace("rbac")
        await plane.apply(ns, BROKER.format(name="b"))
        await plane.apply(ns, TRIGGER.format(name="t", broker="b", type="r", sink=sink.url))
        await plane.ready(ns, "trigger", "t")
        await plane.deliver(broker_url(plane, ns, "b"), "r", sink)
        await plane.kubectl("delete", "-n", ns, "broker", "b", "--timeout=20s")
        await plane.reason(ns, "trigger", "t", "BrokerDoesNotExist")
        assert plane.controller is not None
        # (Other namespaces' refs to the test CRD are forbidden: no role grants it. Not ours.)
        forbidden = [x for x in plane.controller.tail().splitlines() if "forbidden" in x]
        assert [x for x in forbidden if ns in x] == []
    finally:
        plane.kill_controller()
        plane.start_controller()


AUTH_YAML = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: secure}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t}}
spec:
  broker: secure
  subscriber: {{uri: "{sink}"}}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: EventPolicy
metadata: {{name: senders}}
spec:
  to:
    - ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: secure}}
  from:
    - ref: {{apiVersion: v1, kind: ServiceAccount, name: sender}}
  filters:
    - exact: {{type: ok}}
"""


async def test_oidc_and_event_policies_with_the_api_server_as_issuer(
    plane: Cluster, sinks: SinkServer
) -> None:
    """config-features turns authentication-oidc on; the ingress process reads the API server's
    issuer by discovery; a ServiceAccount token from TokenRequest is the sender's identity."""
    from kbroker.filter.tokens import TokenRequestProvider

    sink = sinks.sink("secure")
    ns = plane.kube.namespace("authz")
    for sa in ("sender", "other"):
        await plane.kubectl("create", "serviceaccount", sa, "-n", ns)
    token_file = plane.root / "discovery-token"
    token_file.write_text(plane.kube.token)
    ca = json.loads(plane.kube.kubeconfig.read_text())["clusters"][0]["cluster"][
        "certificate-authority"
    ]
    features = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config-features", "namespace": "kbroker-system"},
        "data": {
            "authentication-oidc": "enabled",
            "oidc-discovery-base-url": plane.kube.server,
            "kbroker.oidc-discovery-token-file": str(token_file),
            "kbroker.oidc-discovery-ca-file": ca,
        },
    }
    await plane.kubectl("apply", "-f", "-", stdin=json.dumps(features))
    try:
        await plane.apply(ns, AUTH_YAML.format(sink=sink.url))
        broker = await plane.ready(ns, "broker", "secure")
        audience = f"eventing.knative.dev/broker/{ns}/secure"
        assert broker["status"]["address"]["audience"] == audience
        assert broker["status"]["policies"] == [
            {"apiVersion": "eventing.knative.dev/v1alpha1", "name": "senders"}
        ]
        policy = await plane.ready(ns, "eventpolicy", "senders")
        assert policy["status"]["from"] == [f"system:serviceaccount:{ns}:sender"]
        await plane.ready(ns, "trigger", "t")

        admin = {"Authorization": f"Bearer {plane.kube.token}"}
        tls = ssl.create_default_context(cafile=ca)

        async def post(sa: str | None, etype: str) -> httpx.Response:
            event = ce.CloudEvent(
                {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "/k", "type": etype},
                b"{}",
            )
            headers, body = ce.encode_binary(event)
            if sa is not None:
                provider = TokenRequestProvider(plane.kube.server, ns, sa, admin, tls)
                headers.append(("authorization", f"Bearer {await provider.token(sa, audience)}"))
            return await plane.http.post(
                broker_url(plane, ns, "secure"), content=body, headers=headers
            )

        assert (await post(None, "ok")).status_code == 401
        assert (await post("other", "ok")).status_code == 403
        assert (await post("sender", "not-ok")).status_code == 403
        accepted = await post("sender", "ok")
        assert accepted.status_code == 202, accepted.text
        await sink.wait_for(1, timeout=10)
        assert [e.type for e in sink.events] == ["ok"]
    finally:
        await plane.kubectl(
            "delete", "configmap", "config-features", "-n", "kbroker-system", "--ignore-not-found"
        )

        async def off() -> bool:
            c = await plane.condition(ns, "broker", "secure", "EventPoliciesReady")
            return bool(c and c.get("reason") == "OIDCDisabled")

        await plane.until(off, "authentication-oidc off again")
