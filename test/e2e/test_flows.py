"""Knative's workflow semantics, end to end, on the embedded log, Kafka and NATS JetStream.

    sender --> Sequence / Parallel address --> internal channels --> real step subscribers
                                          \\-> reply: a sink, or a Broker whose Trigger picks it up

One `kbroker run` per backend serves every table row of the module (each row has its own flow and
sinks, all in one config folder), so the module costs one start per backend.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from e2e import flows_yaml as fy
from e2e import knative_yaml as ky
from fixtures.broker import BrokerProcess
from fixtures.subscriber import SinkServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "flows"


@dataclass
class World:
    proc: BrokerProcess
    sinks: SinkServer
    backend: str


def _config(s: SinkServer, template: dict[str, object]) -> str:
    """Every row's objects: one flow (or more) and its sinks per test below."""
    seq, par = fy.sequence, fy.parallel
    u = fy.uri

    def sink(name: str, **kw: object) -> str:
        return s.sink(name, **kw).url

    objs = [
        ky.broker(namespace=NS),
        # 3 steps appending to the data, reply to a sink
        seq(
            "append",
            NS,
            [u(sink(f"append-{i}", reply=fy.appender(f"-step{i}"))) for i in (1, 2, 3)],
            template,
            u(sink("append-out")),
        ),
        # step 0 fails twice, then succeeds: its delivery retries
        seq(
            "retrying",
            NS,
            [
                {
                    "uri": sink(
                        "retrying-0", fail_first=2, fail_status=503, reply=fy.appender("-ok")
                    ),
                    "delivery": {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.05S"},
                }
            ],
            template,
            u(sink("retrying-out")),
        ),
        # step 1 always fails: the event it got goes to the step's dead-letter sink
        seq(
            "dlq",
            NS,
            [
                u(sink("dlq-0", reply=fy.appender("-s0"))),
                {
                    "uri": sink("dlq-1", status=500),
                    "delivery": {
                        "retry": 1,
                        "backoffDelay": "PT0.05S",
                        "deadLetterSink": u(sink("dlq-dls")),
                    },
                },
            ],
            template,
            u(sink("dlq-out")),
        ),
        # step 0 answers 2xx without an event for type "stop": the flow ends there
        seq(
            "ender",
            NS,
            [
                u(sink("ender-0", reply=lambda e: None if e.type == "stop" else e)),
                u(sink("ender-1", reply=lambda e: e)),
            ],
            template,
            u(sink("ender-out")),
        ),
        # the reply is a Broker; a Trigger there picks the result up
        seq(
            "tobroker",
            NS,
            [u(sink("tobroker-0", reply=fy.appender("-done", "com.example.flow.done")))],
            template,
            fy.ref("Broker", "default", NS),
        ),
        ky.trigger(
            "flow-done",
            sink("tobroker-out"),
            namespace=NS,
            attributes={"type": "com.example.flow.done"},
        ),
        # Parallel: three branches, two filters pass (one as is, one transformed), one drops
        par(
            "par",
            NS,
            [
                {
                    "filter": u(sink("par-f0", reply=lambda e: e)),
                    "subscriber": u(sink("par-s0", reply=fy.appender("-b0"))),
                    "reply": u(sink("par-r0")),
                },
                {
                    "filter": u(sink("par-f1", reply=fy.appender("-f1"))),
                    "subscriber": u(sink("par-s1", reply=fy.appender("-b1"))),
                },
                {
                    "filter": u(sink("par-f2")),
                    "subscriber": u(sink("par-s2", reply=fy.appender("-b2"))),
                },
            ],
            template,
            u(sink("par-out")),
        ),
        # the business loop: Broker -> Trigger -> Sequence -> reply to the Broker -> Trigger
        ky.trigger(
            "orders",
            "http://unused.invalid/",
            namespace=NS,
            attributes={"type": "com.example.order"},
        ),
        seq(
            "biz",
            NS,
            [
                u(sink("biz-0", reply=fy.appender("-checked"))),
                u(sink("biz-1", reply=fy.appender("-billed", "com.example.order.processed"))),
            ],
            template,
            fy.ref("Broker", "default", NS),
        ),
        ky.trigger(
            "processed",
            sink("biz-out"),
            namespace=NS,
            attributes={"type": "com.example.order.processed"},
        ),
    ]
    # The "orders" Trigger's subscriber is the Sequence, by reference (Addressable resolution).
    objs[-3]["spec"]["subscriber"] = fy.ref("Sequence", "biz", NS)
    # By hand: a generic Channel backed by the template's kind, two Subscriptions, one ordered
    # with a reply, one without (its subscriber's answers are dropped).
    objs += [
        {
            "apiVersion": "messaging.knative.dev/v1",
            "kind": "Channel",
            "metadata": {"name": "hand", "namespace": NS},
            "spec": {"channelTemplate": template},
        },
        fy.subscription(
            "hand-ordered",
            NS,
            "hand",
            u(sink("hand-a", reply=fy.appender("-a"))),
            u(sink("hand-reply")),
            annotations={"kafka.eventing.knative.dev/delivery.order": "ordered"},
        ),
        fy.subscription("hand-plain", NS, "hand", u(sink("hand-b", reply=fy.appender("-b")))),
    ]
    return ky.dump(*objs)


@pytest_asyncio.fixture(
    scope="module",
    loop_scope="module",
    params=[
        "embedded",
        pytest.param("kafka", marks=pytest.mark.kafka),
        pytest.param("nats", marks=pytest.mark.nats),
    ],
)
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    backend: str = request.param
    sinks = SinkServer()
    await sinks.start()
    args: list[str] = []
    tag = uuid.uuid4().hex[:8]
    names = [
        f"--topic-template=kb-{tag}-{{namespace}}-{{name}}",
        f"--group-template=kb-{tag}-{{namespace}}-{{name}}",
    ]
    if backend == "kafka":
        args = ["--kafka", request.getfixturevalue("kafka_bootstrap"), *names]
    elif backend == "nats":
        args = ["--nats", request.getfixturevalue("nats_url"), *names]
    proc = BrokerProcess(tmp_path_factory.mktemp(f"flows-{backend}"), args)
    template = dict(fy.TEMPLATES[backend])
    proc.write("flows.yaml", _config(sinks, template))
    try:
        await proc.start()
        yield World(proc, sinks, backend)
    finally:
        await proc.close()
        await sinks.close()


async def _address(w: World, kind: str, name: str) -> str:
    obj = await fy.wait_ready(w.proc, kind, name, NS)
    url: str = obj["status"]["address"]["url"]
    return url


async def test_sequence_steps_run_in_order(world: World) -> None:
    url = await _address(world, "Sequence", "append")
    assert url.endswith(f"/channels/{NS}/append-kn-sequence-0")
    assert await fy.post(world.proc, url, fy.text_event("a1", "hello")) == 202
    out = world.sinks.sinks["append-out"]
    [event] = await out.wait_for(1)
    assert event.data == b"hello-step1-step2-step3"
    assert event.type == "com.example.flow"  # the steps kept the type: rekt's SequenceTest
    # Each step got the previous step's answer, with Prefer: reply, and no broker extension.
    second = world.sinks.sinks["append-2"].received[0]
    assert second.event is not None and second.event.data == b"hello-step1"
    assert second.headers.get("prefer") == "reply"
    assert all("knativebrokerttl" not in r.event.attributes for r in out.received if r.event)


async def test_step_fails_then_succeeds_per_its_delivery(world: World) -> None:
    url = await _address(world, "Sequence", "retrying")
    assert await fy.post(world.proc, url, fy.text_event("r1", "x")) == 202
    [event] = await world.sinks.sinks["retrying-out"].wait_for(1)
    assert event.data == b"x-ok"
    assert [r.event.id for r in world.sinks.sinks["retrying-0"].received if r.event] == ["r1"] * 3


async def test_step_dead_letters(world: World) -> None:
    url = await _address(world, "Sequence", "dlq")
    assert await fy.post(world.proc, url, fy.text_event("d1", "y")) == 202
    [dead] = await world.sinks.sinks["dlq-dls"].wait_for(1)
    assert dead.data == b"y-s0"  # what step 1 got, not the original
    assert dead.attributes["knativeerrorcode"] == "500"
    assert dead.attributes["knativeerrordest"] == world.sinks.sinks["dlq-1"].url
    assert len(world.sinks.sinks["dlq-1"].received) == 2  # the first attempt and one retry
    assert world.sinks.sinks["dlq-out"].received == []


async def test_step_answering_without_an_event_ends_the_flow(world: World) -> None:
    url = await _address(world, "Sequence", "ender")
    assert await fy.post(world.proc, url, fy.text_event("e1", "z", "stop")) == 202
    await world.sinks.sinks["ender-0"].wait_for(1)
    assert await fy.post(world.proc, url, fy.text_event("e2", "z", "go")) == 202
    [event] = await world.sinks.sinks["ender-out"].wait_for(1)
    assert event.id == "e2"
    await fy.settle()
    assert world.sinks.sinks["ender-1"].ids() == ["e2"]
    assert world.sinks.sinks["ender-out"].ids() == ["e2"]


async def test_reply_to_a_broker_reaches_its_trigger(world: World) -> None:
    url = await _address(world, "Sequence", "tobroker")
    assert await fy.post(world.proc, url, fy.text_event("b1", "order")) == 202
    [event] = await world.sinks.sinks["tobroker-out"].wait_for(1)
    assert (event.type, event.data) == ("com.example.flow.done", b"order-done")


async def test_parallel_filters_branches_and_replies(world: World) -> None:
    url = await _address(world, "Parallel", "par")
    assert url.endswith(f"/channels/{NS}/par-kn-parallel")
    assert await fy.post(world.proc, url, fy.text_event("p1", "in")) == 202
    [own] = await world.sinks.sinks["par-r0"].wait_for(1)  # branch 0's own reply
    assert own.data == b"in-b0"
    [shared] = await world.sinks.sinks["par-out"].wait_for(1)  # branch 1: spec.reply
    assert shared.data == b"in-f1-b1"  # the filter's answer, not the original, went on
    await world.sinks.sinks["par-f2"].wait_for(1)
    await fy.settle()
    assert world.sinks.sinks["par-s2"].received == []  # filtered out by a 2xx without an event
    assert len(world.sinks.sinks["par-out"].received) == 1
    status = (await fy.wait_ready(world.proc, "Parallel", "par", NS))["status"]
    assert len(status["branchStatuses"]) == 3
    assert status["ingressChannelStatus"]["ready"]["status"] == "True"


async def test_trigger_into_sequence_replying_to_the_broker(world: World) -> None:
    """The business loop: an order enters the Broker, a Trigger hands it to a Sequence by
    reference, the Sequence's result goes back to the Broker, another Trigger picks it up."""
    await fy.wait_ready(world.proc, "Sequence", "biz", NS)
    await world.proc.wait_ready_object("Trigger", "orders", NS)
    trig = await world.proc.object_status("Trigger", "orders", NS)
    assert trig is not None
    assert trig["status"]["subscriberUri"].endswith(f"/channels/{NS}/biz-kn-sequence-0")
    event = fy.text_event("o1", "order-7", "com.example.order")
    assert await fy.post(world.proc, world.proc.broker_url(namespace=NS), event) == 202
    [done] = await world.sinks.sinks["biz-out"].wait_for(1)
    assert (done.type, done.data) == ("com.example.order.processed", b"order-7-checked-billed")


async def test_hand_written_channel_and_subscriptions(world: World) -> None:
    await fy.wait_ready(world.proc, "Subscription", "hand-ordered", NS)
    await fy.wait_ready(world.proc, "Subscription", "hand-plain", NS)
    channel = await fy.wait_ready(world.proc, "Channel", "hand", NS)
    url = channel["status"]["address"]["url"]
    assert channel["status"]["channel"]["kind"] == fy.TEMPLATES[world.backend]["kind"]
    for i in range(5):
        assert await fy.post(world.proc, url, fy.text_event(f"h{i}", f"{i}")) == 202
    replies = await world.sinks.sinks["hand-reply"].wait_for(5)
    assert [e.data for e in replies] == [b"0-a", b"1-a", b"2-a", b"3-a", b"4-a"]  # in order
    await world.sinks.sinks["hand-b"].wait_for(5)
    # An unknown channel is a 404, and the Broker of the same namespace is not a channel.
    missing = url.rsplit("/", 1)[0] + "/nope"
    assert await fy.post(world.proc, missing, fy.text_event("n", "n")) == 404
    broker_as_channel = url.rsplit("/", 1)[0] + "/default"
    assert await fy.post(world.proc, broker_as_channel, fy.text_event("n", "n")) == 404


async def test_adding_a_step_takes_effect_on_reload(world: World) -> None:
    s, template = world.sinks, fy.TEMPLATES[world.backend]
    steps = [fy.uri(s.sink(f"grow-{i}", reply=fy.appender(f"-{i}")).url) for i in (1, 2)]
    out = fy.uri(s.sink("grow-out").url)
    world.proc.write("grow.yaml", ky.dump(fy.sequence("grow", NS, steps[:1], template, out)))
    url = await _address(world, "Sequence", "grow")
    assert await fy.post(world.proc, url, fy.text_event("g1", "g")) == 202
    [first] = await s.sinks["grow-out"].wait_for(1)
    assert first.data == b"g-1"
    world.proc.write("grow.yaml", ky.dump(fy.sequence("grow", NS, steps, template, out)))

    async def two_steps() -> bool:
        obj = await fy.wait_ready(world.proc, "Sequence", "grow", NS)
        return len(obj["status"]["channelStatuses"]) == 2

    await world.proc.until(two_steps, 30.0, "the second step never became Ready")
    assert await _address(world, "Sequence", "grow") == url  # channel 0 and its address stay
    assert await fy.post(world.proc, url, fy.text_event("g2", "g")) == 202
    events = await s.sinks["grow-out"].wait_for(2)
    assert events[1].data == b"g-1-2"


async def test_kbroker_get_shows_workflows(world: World) -> None:
    await fy.wait_ready(world.proc, "Sequence", "append", NS)

    def get(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "kbroker", "get", *args, "--server", world.proc.base],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    sequences = get("sequences", "-n", NS)
    assert "append" in sequences and f"/channels/{NS}/append-kn-sequence-0" in sequences
    assert "True" in sequences
    subs = get("subscriptions", "append-kn-sequence-2", "-o", "json")
    assert '"replyUri"' in subs and "append-out" in subs
    channels = get("channels", "-n", NS)
    assert "par-kn-parallel-2" in channels
    parallels = get("parallels", "par", "-o", "yaml")
    assert "branchStatuses" in parallels
