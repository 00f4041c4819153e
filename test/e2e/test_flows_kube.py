"""Workflows on the real kube-apiserver: Knative's Sequence and Parallel YAML, Ready, events flow.

    kubectl apply (Knative docs YAML) ──> kube-apiserver <──watch/patch── kbroker controller
                                                                              │ contract file
    producer ──POST status.address.url──> kbroker ingress ──> log ──> kbroker filter ──> steps

The Sequence and Parallel are the examples of Knative's docs, applied unchanged. Their steps are
Knative Services (serving.knative.dev/v1), so a stand-in CRD for that kind is installed and each
Service's status.address.url is pointed at a real local HTTP subscriber, as Knative Serving would
point it at a pod: the controller resolves the refs exactly as on a Knative cluster. Ingress,
filter and controller are real `kbroker` processes (no kubelet here), sharing one module, with a
real Kafka: as in the shipped deployment (--kafka), it stores KafkaChannels, InMemoryChannels and
the Brokers' events, because ingress and filter pods cannot share the embedded log.
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
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from fixtures.knative_flows import DOCS_PARALLEL, DOCS_SEQUENCE
from fixtures.kube import Kube
from fixtures.subscriber import Sink, SinkServer
from kbroker.core import events as ce

pytestmark = pytest.mark.kafka  # the module's processes run with --kafka

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
FLOW_CRDS = (
    "channels.messaging.knative.dev",
    "inmemorychannels.messaging.knative.dev",
    "kafkachannels.messaging.knative.dev",
    "subscriptions.messaging.knative.dev",
    "sequences.flows.knative.dev",
    "parallels.flows.knative.dev",
)

# Knative Serving is not installed: its Service kind, as an Addressable whose status we write.
KSVC_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: services.serving.knative.dev
spec:
  group: serving.knative.dev
  scope: Namespaced
  names: {kind: Service, plural: services, singular: service, listKind: ServiceList,
          shortNames: [ksvc]}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""

# Knative's docs' Sequence and Parallel: fixtures.knative_flows, unchanged.
# Knative's docs, eventing/channels: a Channel and a Subscription written by hand.
DOCS_CHANNEL = """
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata:
  name: my-channel
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata:
  name: my-subscription
spec:
  channel:
    apiVersion: messaging.knative.dev/v1
    kind: Channel
    name: my-channel
  subscriber:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: my-service
"""

KSVC = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {name}
spec:
  template:
    spec:
      containers:
        - image: gcr.io/knative-releases/knative.dev/eventing/cmd/appender
"""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


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


def stop(proc: Proc) -> None:
    if proc.popen.poll() is None:
        proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(10)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(5)


@dataclass
class Plane:
    kube: Kube
    ingress: Proc
    filter: Proc
    root: Path
    kafka: str
    controller: Proc = field(init=False)
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10.0))

    @property
    def data(self) -> Path:
        return self.root / "data"

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
            str(self.root / "contract.json"),
            "--ingress-url",
            self.ingress.url,
            "--data-plane",
            self.ingress.url,
            "--data-plane",
            self.filter.url,
            "--resync",
            "1",
            "--kafka",
            self.kafka,
        ]
        self.controller = spawn("controller", args, self.root)

    async def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return await asyncio.to_thread(self.kube.kubectl, *args, stdin=stdin)

    async def apply(self, ns: str, text: str) -> None:
        await self.kubectl("apply", "-n", ns, "-f", "-", stdin=text)

    async def get(self, ns: str, kind: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            await self.kubectl("get", "-n", ns, kind, name, "-o", "json")
        )
        return found

    async def service(self, ns: str, name: str, sink: Sink) -> None:
        """A Knative Service whose address is `sink`, as Knative Serving would publish it."""
        await self.apply(ns, KSVC.format(name=name))
        status = {"status": {"address": {"url": sink.url}, "url": sink.url}}
        await self.kubectl(
            "patch", "-n", ns, "ksvc", name, "--type=merge", "-p", json.dumps(status)
        )

    async def ready(self, ns: str, kind: str, name: str, t: float = 40) -> dict[str, Any]:
        deadline = time.monotonic() + t
        while True:
            for p in (self.ingress, self.filter, self.controller):
                if p.popen.poll() is not None:
                    pytest.fail(f"{p.name} exited: {p.tail()}")
            obj = await self.get(ns, kind, name)
            st = obj.get("status") or {}
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", ())
            )
            if ready and st.get("observedGeneration") == obj["metadata"]["generation"]:
                return obj
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{kind} {ns}/{name} not Ready: {json.dumps(st, indent=1)}\n"
                    f"controller log:\n{self.controller.tail()}"
                )
            await asyncio.sleep(0.1)

    async def send(
        self, url: str, data: dict[str, Any], etype: str = "dev.knative.sources.ping"
    ) -> None:
        event = ce.CloudEvent(
            {
                "specversion": "1.0",
                "id": uuid.uuid4().hex,
                "source": "test/flows-kube",
                "type": etype,
                "datacontenttype": "application/json",
            },
            json.dumps(data).encode(),
        )
        headers, body = ce.encode_binary(event)
        resp = await self.http.post(url, content=body, headers=headers)
        assert resp.status_code == 202, resp.text


@pytest.fixture(scope="module")
def processes(
    kube: Kube, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Plane]:
    root = tmp_path_factory.mktemp("flows-kube")
    kube.kubectl("apply", "-f", str(CONFIG / "100-namespace.yaml"))
    kube.kubectl("apply", "-f", str(CONFIG / "310-crds-flows.yaml"))
    kube.kubectl("apply", "-f", "-", stdin=KSVC_CRD)
    crds = [*FLOW_CRDS, "services.serving.knative.dev"]
    kube.kubectl("wait", "--for=condition=Established", *(f"crd/{n}" for n in crds))
    contract = root / "contract.json"
    data_plane = ["--contract", str(contract), "--port", "0", "--data", str(root / "data")]
    data_plane += ["--kafka", kafka_bootstrap]  # KafkaChannels, and the Brokers' default
    ingress = spawn("ingress", ["ingress", *data_plane, "--poll", "0.1"], root)
    filter_ = spawn("filter", ["filter", *data_plane, "--poll", "0.1"], root)
    plane = Plane(kube, ingress, filter_, root, kafka_bootstrap)
    try:
        plane.start_controller()
        yield plane
    finally:
        for p in (plane.controller, filter_, ingress):
            stop(p)


@pytest.fixture
async def plane(processes: Plane, sinks: SinkServer) -> AsyncIterator[Plane]:
    yield processes
    await processes.http.aclose()
    processes.http = httpx.AsyncClient(timeout=10.0)  # a new loop per test


def appender(message: str) -> Any:
    """Knative's `appender` sample: the reply is the event with `message` appended to data."""

    def reply(event: ce.CloudEvent) -> ce.CloudEvent:
        data = json.loads(event.data or b"{}")
        data["message"] = str(data.get("message", "")) + message
        return ce.CloudEvent(dict(event.attributes), json.dumps(data).encode())

    return reply


async def test_docs_sequence_goes_ready_with_an_address_and_runs_its_steps_in_order(
    plane: Plane, sinks: SinkServer
) -> None:
    ns = plane.kube.namespace("seq")
    steps = [sinks.sink(f"step{i}", reply=appender(f" - Handled by {i}")) for i in range(3)]
    display = sinks.sink("display")
    for name, sink in zip(("first", "second", "third"), steps, strict=True):
        await plane.service(ns, name, sink)
    await plane.service(ns, "event-display", display)
    await plane.apply(ns, DOCS_SEQUENCE)

    seq = await plane.ready(ns, "sequence", "sequence")
    st = seq["status"]
    url = st["address"]["url"]
    assert url.startswith(plane.ingress.url)
    conditions = {c["type"]: c["status"] for c in st["conditions"]}
    for ctype in ("Ready", "ChannelsReady", "SubscriptionsReady"):
        assert conditions[ctype] == "True", st
    names = [c["channel"]["name"] for c in st["channelStatuses"]]
    assert names == [f"sequence-kn-sequence-{i}" for i in range(3)]
    assert {c["channel"]["kind"] for c in st["channelStatuses"]} == {"InMemoryChannel"}
    subs = [s["subscription"]["name"] for s in st["subscriptionStatuses"]]
    assert subs == names
    assert all(s["ready"]["status"] == "True" for s in st["subscriptionStatuses"])
    listed = await plane.kubectl("get", "-n", ns, "sequences")
    assert re.search(rf"^sequence\s+{re.escape(url)}\s+\S+\s+True\s*$", listed, re.M), listed

    await plane.send(url, {"id": 1, "message": "Hello world!"})
    await display.wait_for(1, timeout=20)
    out = display.events[0]
    assert json.loads(out.data or b"") == {
        "id": 1,
        "message": "Hello world! - Handled by 0 - Handled by 1 - Handled by 2",
    }
    assert out.type == "dev.knative.sources.ping"
    assert [len(s.received) for s in steps] == [1, 1, 1]


async def test_docs_parallel_routes_each_event_through_the_branches_whose_filter_answers(
    plane: Plane, sinks: SinkServer
) -> None:
    ns = plane.kube.namespace("par")

    def only(parity: int) -> Any:
        def answer(event: ce.CloudEvent) -> ce.CloudEvent | None:
            n = json.loads(event.data or b"{}")["id"]
            return event if n % 2 == parity else None  # 2xx without an event: filtered out

        return answer

    filters = {"even-filter": only(0), "odd-filter": only(1)}
    for name, answer in filters.items():
        await plane.service(ns, name, sinks.sink(name, reply=answer))
    transformers = {
        "even-transformer": appender(" - even"),
        "odd-transformer": appender(" - odd"),
    }
    for name, answer in transformers.items():
        await plane.service(ns, name, sinks.sink(name, reply=answer))
    display = sinks.sink("par-display")
    await plane.service(ns, "event-display", display)
    await plane.apply(ns, DOCS_PARALLEL)

    par = await plane.ready(ns, "parallel", "odd-even-parallel")
    st = par["status"]
    url = st["address"]["url"]
    conditions = {c["type"]: c["status"] for c in st["conditions"]}
    for ctype in ("Ready", "ChannelsReady", "SubscriptionsReady", "Addressable"):
        assert conditions[ctype] == "True", st
    assert st["ingressChannelStatus"]["channel"]["name"] == "odd-even-parallel-kn-parallel"
    assert st["ingressChannelStatus"]["ready"]["status"] == "True"
    branches = st["branchStatuses"]
    assert [b["filterSubscriptionStatus"]["subscription"]["name"] for b in branches] == [
        "odd-even-parallel-kn-parallel-filter-0",
        "odd-even-parallel-kn-parallel-filter-1",
    ]
    assert [b["subscriberSubscriptionStatus"]["subscription"]["name"] for b in branches] == [
        "odd-even-parallel-kn-parallel-0",
        "odd-even-parallel-kn-parallel-1",
    ]
    assert all(
        b[part]["ready"]["status"] == "True"
        for b in branches
        for part in (
            "filterSubscriptionStatus",
            "filterChannelStatus",
            "subscriberSubscriptionStatus",
        )
    )
    listed = await plane.kubectl("get", "-n", ns, "parallels")
    assert re.search(rf"^odd-even-parallel\s+{re.escape(url)}\s+\S+\s+True", listed, re.M)

    for n in (2, 3, 4):
        await plane.send(url, {"id": n, "message": "n"})
    events = await display.wait_for(3, timeout=20)
    got = sorted(
        (json.loads(e.data or b"")["id"], json.loads(e.data or b"")["message"]) for e in events
    )
    assert got == [(2, "n - even"), (3, "n - odd"), (4, "n - even")]
    await asyncio.sleep(0.5)  # nothing else arrives: each event took exactly one branch
    assert len(display.received) == 3


async def test_docs_channel_and_subscription_deliver_to_the_subscriber(
    plane: Plane, sinks: SinkServer
) -> None:
    ns = plane.kube.namespace("chan")
    sink = sinks.sink("my-service")
    await plane.service(ns, "my-service", sink)
    await plane.apply(ns, DOCS_CHANNEL)

    channel = await plane.ready(ns, "channels.messaging.knative.dev", "my-channel")
    url = channel["status"]["address"]["url"]
    assert url.startswith(plane.ingress.url)
    assert channel["status"]["annotations"]["kbroker.dev/channel"] == "kafka"  # see below
    sub = await plane.ready(ns, "subscription", "my-subscription")
    assert sub["status"]["physicalSubscription"]["subscriberUri"] == sink.url

    await plane.send(url, {"id": 7})
    await sink.wait_for(1, timeout=20)
    assert json.loads(sink.events[0].data or b"") == {"id": 7}


# The mission's loop on a cluster: a Trigger delivers to a Sequence by ref, the Sequence replies to
# the Broker, and a second Trigger picks the result up.
LOOP = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: to-workflow
spec:
  broker: default
  filter:
    attributes:
      type: order.placed
  subscriber:
    ref:
      apiVersion: flows.knative.dev/v1
      kind: Sequence
      name: fulfil
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata:
  name: fulfil
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
  steps:
    - uri: {pack}
    - uri: {ship}
  reply:
    ref:
      apiVersion: eventing.knative.dev/v1
      kind: Broker
      name: default
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: done
spec:
  broker: default
  filter:
    attributes:
      type: order.shipped
  subscriber:
    uri: {done}
"""


def ship(event: ce.CloudEvent) -> ce.CloudEvent:
    """The last step: a new event type, so the Broker routes the result elsewhere."""
    shipped = appender(" shipped")(event)
    return ce.CloudEvent({**shipped.attributes, "type": "order.shipped"}, shipped.data)


async def test_a_trigger_feeds_a_sequence_whose_reply_returns_to_the_broker(
    plane: Plane, sinks: SinkServer
) -> None:
    ns = plane.kube.namespace("loop")
    pack = sinks.sink("pack", reply=appender(" packed"))

    shipper = sinks.sink("ship", reply=ship)
    done = sinks.sink("done")
    await plane.apply(ns, LOOP.format(pack=pack.url, ship=shipper.url, done=done.url))

    seq = await plane.ready(ns, "sequence", "fulfil")
    trigger = await plane.ready(ns, "trigger", "to-workflow")
    assert trigger["status"]["subscriberUri"] == seq["status"]["address"]["url"]
    await plane.ready(ns, "trigger", "done")
    broker = await plane.ready(ns, "broker", "default")

    await plane.send(broker["status"]["address"]["url"], {"message": "order"}, "order.placed")
    await done.wait_for(1, timeout=20)
    assert json.loads(done.events[0].data or b"") == {"message": "order packed shipped"}
    assert done.events[0].type == "order.shipped"


async def test_deleting_a_sequence_stops_serving_it_and_deletes_its_channels_storage(
    plane: Plane, sinks: SinkServer
) -> None:
    ns = plane.kube.namespace("gone")
    step = sinks.sink("gone-step")
    text = DOCS_SEQUENCE.split("  reply:")[0]  # the docs' Sequence, without its reply
    for name in ("first", "second", "third"):
        await plane.service(ns, name, step)
    await plane.apply(ns, text)
    seq = await plane.ready(ns, "sequence", "sequence")
    url = seq["status"]["address"]["url"]
    await plane.send(url, {"message": "m"})
    await step.wait_for(1, timeout=20)

    # Under --kafka the InMemoryChannels are Kafka topics (ingress and filter pods share no disk).
    admin = AdminClient({"bootstrap.servers": plane.kafka})
    topics = {f"knative-messaging-kafka.{ns}.sequence-kn-sequence-{i}" for i in range(3)}

    async def existing() -> set[str]:
        meta = await asyncio.to_thread(admin.list_topics, None, 10)
        return topics & set(meta.topics)

    assert await existing() == topics
    await plane.kubectl("delete", "-n", ns, "sequence", "sequence")
    deadline = time.monotonic() + 30
    while await existing():
        if time.monotonic() > deadline:
            pytest.fail(f"topics not deleted; controller log:\n{plane.controller.tail()}")
        await asyncio.sleep(0.2)
    event = ce.CloudEvent(
        {"specversion": "1.0", "id": "late", "source": "test", "type": "t"}, b"{}"
    )
    headers, body = ce.encode_binary(event)
    resp = await plane.http.post(url, content=body, headers=headers)
    assert resp.status_code == 404, resp.text


# Knative's docs (eventing/channels, KafkaChannel page): a KafkaChannel and a Subscription to it;
# and the docs' Sequence on KafkaChannels instead of InMemoryChannels.
DOCS_KAFKA_CHANNEL = """
apiVersion: messaging.knative.dev/v1beta1
kind: KafkaChannel
metadata:
  name: my-kafka-channel
spec:
  numPartitions: 3
  replicationFactor: 1
  retentionDuration: PT168H
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata:
  name: to-display
spec:
  channel:
    apiVersion: messaging.knative.dev/v1beta1
    kind: KafkaChannel
    name: my-kafka-channel
  subscriber:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: event-display
"""

KAFKA_TEMPLATE = """  channelTemplate:
    apiVersion: messaging.knative.dev/v1beta1
    kind: KafkaChannel
    spec:
      numPartitions: 1
      replicationFactor: 1
"""


async def test_kafka_channels_hand_written_and_as_a_sequence_template(
    plane: Plane, sinks: SinkServer
) -> None:
    ns = plane.kube.namespace("kafka")
    display = sinks.sink("k-display")
    await plane.service(ns, "event-display", display)
    await plane.apply(ns, DOCS_KAFKA_CHANNEL)
    kc = await plane.ready(ns, "kafkachannel", "my-kafka-channel")
    await plane.ready(ns, "subscription", "to-display")
    url = kc["status"]["address"]["url"]
    listed = await plane.kubectl("get", "-n", ns, "kafkachannels", "--no-headers")
    assert re.search(rf"^my-kafka-channel\s+True\s.*{re.escape(url)}", listed), listed
    await plane.send(url, {"via": "kafkachannel"})
    await display.wait_for(1, timeout=30)

    steps = [sinks.sink(f"k-step{i}", reply=appender(f" - Handled by {i}")) for i in range(3)]
    for name, sink in zip(("first", "second", "third"), steps, strict=True):
        await plane.service(ns, name, sink)
    imc = (
        "  channelTemplate:\n    apiVersion: messaging.knative.dev/v1\n    kind: InMemoryChannel\n"
    )
    assert imc in DOCS_SEQUENCE
    await plane.apply(ns, DOCS_SEQUENCE.replace(imc, KAFKA_TEMPLATE))
    seq = await plane.ready(ns, "sequence", "sequence", t=60)
    kinds = {c["channel"]["kind"] for c in seq["status"]["channelStatuses"]}
    assert kinds == {"KafkaChannel"}
    await plane.send(seq["status"]["address"]["url"], {"message": "k"})
    await display.wait_for(2, timeout=30)
    assert json.loads(display.events[-1].data or b"") == {
        "message": "k - Handled by 0 - Handled by 1 - Handled by 2"
    }


@pytest.mark.slow
async def test_the_controller_needs_no_more_than_the_shipped_rbac(
    plane: Plane, sinks: SinkServer
) -> None:
    """As the kbroker-controller ServiceAccount of config/200-rbac.yaml + 210-rbac-flows.yaml."""
    await plane.kubectl(
        "apply", "-f", str(CONFIG / "200-rbac.yaml"), "-f", str(CONFIG / "210-rbac-flows.yaml")
    )
    token = (
        await plane.kubectl("create", "token", "kbroker-controller", "-n", "kbroker-system")
    ).strip()
    config = json.loads(plane.kube.kubeconfig.read_text())
    config["users"] = [{"name": "kbroker-admin", "user": {"token": token}}]
    sa_kubeconfig = plane.root / "sa-kubeconfig"
    sa_kubeconfig.write_text(json.dumps(config))

    stop(plane.controller)
    plane.start_controller(sa_kubeconfig)
    try:
        ns = plane.kube.namespace("flows-rbac")
        pack = sinks.sink("rbac-pack", reply=appender(" packed"))
        shipper = sinks.sink("rbac-ship", reply=ship)
        done = sinks.sink("rbac-done")
        await plane.apply(ns, LOOP.format(pack=pack.url, ship=shipper.url, done=done.url))
        await plane.ready(ns, "sequence", "fulfil")
        trigger = await plane.ready(ns, "trigger", "to-workflow")  # its ref: a Sequence
        assert "/channels/" in trigger["status"]["subscriberUri"]
        broker = await plane.ready(ns, "broker", "default")
        await plane.ready(ns, "trigger", "done")
        await plane.send(broker["status"]["address"]["url"], {"message": "o"}, "order.placed")
        await done.wait_for(1, timeout=20)
        forbidden = [x for x in plane.controller.tail().splitlines() if "forbidden" in x]
        assert [x for x in forbidden if "flows" in x or "messaging" in x] == []
    finally:
        stop(plane.controller)
        plane.start_controller()


async def test_a_step_without_an_address_keeps_the_sequence_not_ready_until_it_has_one(
    plane: Plane, sinks: SinkServer
) -> None:
    ns = plane.kube.namespace("unresolved")
    display = sinks.sink("late-display")
    for name in ("first", "third"):
        await plane.service(ns, name, sinks.sink(f"late-{name}", reply=appender(f" {name}")))
    await plane.apply(ns, KSVC.format(name="second"))  # Serving has not published its URL yet
    await plane.service(ns, "event-display", display)
    await plane.apply(ns, DOCS_SEQUENCE)

    deadline = time.monotonic() + 30
    while True:
        st = (await plane.get(ns, "sequence", "sequence")).get("status") or {}
        ready = next((c for c in st.get("conditions", ()) if c["type"] == "Ready"), None)
        if ready is not None and "second" in ready.get("message", ""):
            break
        assert time.monotonic() < deadline, st
        await asyncio.sleep(0.1)
    assert ready["status"] != "True"

    await plane.service(ns, "second", sinks.sink("late-second", reply=appender(" second")))
    seq = await plane.ready(ns, "sequence", "sequence")
    await plane.send(seq["status"]["address"]["url"], {"message": "m"})
    await display.wait_for(1, timeout=20)
    assert json.loads(display.events[0].data or b"") == {"message": "m first second third"}

    cm = json.loads(
        await plane.kubectl(
            "get", "-n", "kbroker-system", "configmap", "kbroker-contract", "-o", "json"
        )
    )
    served = json.loads(cm["data"]["contract.json"])  # what the data plane deployables mount
    channels = sorted(b["name"] for b in served["brokers"] if b["namespace"] == ns)
    assert channels == [f"sequence-kn-sequence-{i}" for i in range(3)]
