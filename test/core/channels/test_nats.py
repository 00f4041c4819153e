"""The NATS JetStream channel against a real nats-server: the conformance suite, plus what is
particular to JetStream (durability levels, outage and recovery, other clients on the subject)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import nats as nats_py
import pytest
from fixtures import channel_conformance as conformance
from fixtures.nats import hack_nats
from kbroker.core import contract
from kbroker.core.channel import ChannelUnavailable
from kbroker.core.channels.nats import NatsChannel, NatsSettings, consumer_of, stream_of

pytestmark = pytest.mark.nats


@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
async def test_conformance(check: conformance.Check, nats_url: str) -> None:
    await check(lambda: NatsChannel(NatsSettings(url=nats_url)))


# --- particular to JetStream --------------------------------------------------------------------


ALL, NONE = contract.Durability.ALL, contract.Durability.NONE


def test_names_follow_jetstream_rules() -> None:
    b = contract.Broker("team.a", "my.broker", "u", "http://x/")
    assert stream_of(b) == "knative-broker-team_a-my_broker"
    t = contract.Trigger("ns", "t.1", contract.TriggerUid("u"), "b", "http://s/")
    assert consumer_of(t) == "knative-trigger-ns-t_1"


async def test_plain_client_publishes_kbroker_delivers(nats_url: str) -> None:
    """Binary mode (ce- headers), structured mode (Content-Type) and eventing-natss's bare JSON,
    written by a plain nats-py client, all come out of a subscription as the same CloudEvent."""
    b = conformance.make_broker()
    ch = NatsChannel(NatsSettings(url=nats_url))
    await ch.ensure_broker(b)
    sub = ch.subscribe(b, conformance.make_trigger(b, conformance.EARLIEST))
    nc = await nats_py.connect(nats_url)
    js = nc.jetstream()
    subject = stream_of(b)
    binary = {"ce-specversion": "1.0", "ce-id": "bin", "ce-source": "/plain", "ce-type": "t",
              "ce-datacontenttype": "text/plain", "ce-note": "caf%C3%A9%20au%20lait"}  # fmt: skip
    await js.publish(subject, b"hello", headers=binary)
    structured = b'{"specversion":"1.0","id":"st","source":"/plain","type":"t","data":{"a":1}}'
    await js.publish(subject, structured, headers={"Content-Type": "application/cloudevents+json"})
    await js.publish(subject, structured.replace(b'"st"', b'"bare"'))
    await js.publish(subject, b"not an event")  # skipped, never delivered
    await nc.close()
    got = await conformance.drain(sub, 3)
    assert conformance.ids(got) == ["bin", "st", "bare"]
    first = got[0].envelope.event
    assert first.data == b"hello"
    assert first.attributes["datacontenttype"] == "text/plain"
    assert first.attributes["note"] == "café au lait"
    assert got[1].envelope.event.data == b'{"a":1}'
    await ch.close()


async def test_kbroker_writes_binary_mode_a_plain_client_reads(nats_url: str) -> None:
    b = conformance.make_broker()
    ch = NatsChannel(NatsSettings(url=nats_url))
    await ch.ensure_broker(b)
    env = conformance.envelope("e1", key="k")
    await ch.append(b, [env], ALL)
    await ch.close()
    nc = await nats_py.connect(nats_url)
    psub = await nc.jetstream().pull_subscribe(stream_of(b), durable=None, stream=stream_of(b))
    [msg] = await psub.fetch(1, timeout=5)
    await nc.close()
    headers = msg.headers or {}
    attrs = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
    assert attrs == {"specversion": "1.0", "id": "e1", "source": "/conformance", "type": "t",
                     "count": "7", "flag": "true", "partitionkey": "k"}  # fmt: skip
    assert "Content-Type" not in headers  # binary mode: Content-Type would flag structured
    assert msg.data == env.event.data


async def test_none_durability_is_stored_without_ack(nats_url: str) -> None:
    b = conformance.make_broker()
    ch = NatsChannel(NatsSettings(url=nats_url))
    await ch.ensure_broker(b)
    sub = ch.subscribe(b, conformance.make_trigger(b, conformance.EARLIEST))
    await ch.append(b, [conformance.envelope(f"n{i}") for i in range(20)], NONE)
    assert conformance.ids(await conformance.drain(sub, 20)) == [f"n{i}" for i in range(20)]
    await ch.close()


async def test_uncommitted_events_come_back_after_a_crash(nats_url: str) -> None:
    """A subscription that vanishes without close (a kill -9) leaves its fetched, uncommitted
    events un-acked: JetStream redelivers them to the next subscriber after AckWait."""
    b = conformance.make_broker()
    t = conformance.make_trigger(b, conformance.EARLIEST)
    settings = NatsSettings(url=nats_url, ack_wait=1.0)
    ch = NatsChannel(settings)
    await ch.ensure_broker(b)
    sub = ch.subscribe(b, t)
    await ch.append(b, [conformance.envelope(f"e{i}") for i in range(4)], ALL)
    got = await conformance.drain(sub, 4)
    await sub.commit(0, got[1].offset)
    await ch._conn.close()  # no NAKs: as if the process died
    again = NatsChannel(settings)
    sub2 = again.subscribe(b, t)
    assert conformance.ids(await conformance.drain(sub2, 2, timeout=10.0)) == ["e2", "e3"]
    await again.close()


async def test_server_down_is_503_fast_and_recovers_by_itself(tmp_path: Path) -> None:
    cluster = hack_nats().NatsCluster(tmp_path / "nats", nodes=1)
    url = cluster.start()
    try:
        b = conformance.make_broker()
        ch = NatsChannel(NatsSettings(url=url))
        await ch.ensure_broker(b)
        sub = ch.subscribe(b, conformance.make_trigger(b, conformance.EARLIEST))
        await ch.append(b, [conformance.envelope("before")], ALL)
        cluster.kill_node(1)
        for level in (ALL, contract.Durability.LEADER):
            start = time.monotonic()
            with pytest.raises(ChannelUnavailable):
                await ch.append(b, [conformance.envelope("down")], level)
            assert time.monotonic() - start < 5.0
        assert not await _healthy_soon(ch, False)
        cluster.restart_node(1)
        deadline = time.monotonic() + 15
        while True:  # the client reconnects by itself; appends work again
            try:
                await ch.append(b, [conformance.envelope("after")], ALL)
                break
            except ChannelUnavailable:
                assert time.monotonic() < deadline, "never recovered"
                await asyncio.sleep(0.2)
        got: list[str] = []
        while "after" not in got:
            assert time.monotonic() < deadline + 10, got
            got += conformance.ids(await sub.fetch(10, 1.0))
        # A 503 says the event was not *acknowledged*, not that it was not stored: a publish
        # issued before the client noticed the kill is sent when it reconnects.
        assert got[0] == "before" and got[-1] == "after" and set(got) <= {"before", "down", "after"}
        await ch.close()
    finally:
        cluster.stop()


async def test_never_connected_is_503_fast() -> None:
    ch = NatsChannel(NatsSettings(url=f"nats://127.0.0.1:{_closed_port()}"))
    b = conformance.make_broker()
    start = time.monotonic()
    with pytest.raises(ChannelUnavailable):
        await ch.append(b, [conformance.envelope("x")], ALL)
    assert time.monotonic() - start < 5.0
    await ch.close()


async def _healthy_soon(ch: NatsChannel, want: bool) -> bool:
    for _ in range(30):
        if await ch.healthy() == want:
            return want
        await asyncio.sleep(0.1)
    return not want


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
