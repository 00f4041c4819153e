"""Knative broker conformance (knative.md §5) against the real `kbroker run` process.

    producer --HTTP--> kbroker run (ingress -> embedded log -> trigger workers) --HTTP--> sinks
                                   ^------------------- replies ----------------------/

Every subscriber and dead-letter sink is a real aiohttp server; assertions are on what arrived.
Delivery assertions are "at least once" as in rekt (#6193), with exact counts where retries are
the point.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from e2e import knative_yaml as ky
from fixtures.broker import ON_EVERY_CHANNEL, BrokerProcess, StartBroker, make_event
from fixtures.subscriber import Sink, SinkServer

pytestmark = ON_EVERY_CHANNEL


FAST = {"backoffPolicy": "linear", "backoffDelay": "PT0.01S"}


async def setup(start_broker: StartBroker, *objects: dict[str, object]) -> BrokerProcess:
    proc = await start_broker({"objects.yaml": ky.dump(*objects)})
    for obj in objects:
        meta = obj["metadata"]
        await proc.wait_ready_object(str(obj["kind"]), meta["name"], meta["namespace"])  # type: ignore[index]
    return proc


async def settle(sentinel: Sink, count: int) -> None:
    """Wait until a catch-all trigger saw `count` events, then a little more for the others."""
    await sentinel.wait_for(count)
    await asyncio.sleep(0.3)


# --- routing (7 features) -------------------------------------------------------------------


async def test_routing(start_broker: StartBroker, sinks: SinkServer) -> None:
    all_a, all_b = sinks.sink("all-a"), sinks.sink("all-b")
    match, nomatch = sinks.sink("match"), sinks.sink("nomatch")
    both1, both2 = sinks.sink("both1"), sinks.sink("both2")
    proc = await setup(
        start_broker,
        ky.broker(),
        ky.trigger("all-a", all_a.url),
        ky.trigger("all-b", all_b.url),
        ky.trigger("match", match.url, attributes={"type": "com.example.hit"}),
        ky.trigger("nomatch", nomatch.url, attributes={"type": "com.example.other"}),
        ky.trigger("both1", both1.url, attributes={"type": "com.example.hit"}),
        ky.trigger("both2", both2.url, attributes={"source": "/routing"}),
    )
    resp = await proc.send(make_event("r1", type="com.example.hit", source="/routing"))
    assert resp.status_code == 202
    await settle(all_a, 1)
    await all_b.wait_for(1)
    assert match.ids() == ["r1"]
    assert nomatch.ids() == []  # the non-matching trigger gets nothing
    assert both1.ids() == ["r1"] and both2.ids() == ["r1"]  # each matching trigger its own copy


async def test_reply_chain(start_broker: StartBroker, sinks: SinkServer) -> None:
    def reply(ev):  # type: ignore[no-untyped-def]
        out = make_event("reply-" + ev.id, type="com.example.ReplyEvent", source="/replier")
        return out

    first = sinks.sink("first", reply=reply)
    second = sinks.sink("second")
    proc = await setup(
        start_broker,
        ky.broker(),
        ky.trigger("t1", first.url, attributes={"type": "com.example.start"}),
        ky.trigger("t2", second.url, attributes={"type": "com.example.ReplyEvent"}),
    )
    assert (await proc.send(make_event("c1", type="com.example.start"))).status_code == 202
    got = await second.wait_for(1)
    assert got[0].id == "reply-c1"
    # The subscriber never sees the loop guard; the reply carried TTL - 1 through the broker.
    assert "ce-knativebrokerttl" not in second.received[0].headers
    assert first.ids() == ["c1"]


# --- delivery matrix (5 cases) --------------------------------------------------------------


async def test_delivery_no_retries_when_none_configured(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    s = sinks.sink("s", fail_first=1)
    proc = await setup(start_broker, ky.broker(delivery={}), ky.trigger("t", s.url))
    await proc.send(make_event("a1"))
    await s.wait_for(1)
    await asyncio.sleep(0.5)
    assert len(s.received) == 1


async def test_delivery_broker_dls_and_retry(start_broker: StartBroker, sinks: SinkServer) -> None:
    t1, t2, bdls = (
        sinks.sink("t1", fail_first=3),
        sinks.sink("t2", fail_first=4),
        sinks.sink("bdls"),
    )
    proc = await setup(
        start_broker,
        ky.broker(delivery=ky.dls(bdls.url, retry=3, **FAST)),
        ky.trigger("t1", t1.url),
        ky.trigger("t2", t2.url),
    )
    await proc.send(make_event("b1"))
    await bdls.wait_for(1)
    await t1.wait_for(4)
    assert len(t1.received) == 4  # failed 3 times, then delivered
    assert len(t2.received) == 4  # 1 + 3 retries, all failed
    assert bdls.ids() == ["b1"]
    assert bdls.received[0].headers["ce-knativeerrordest"] == t2.url


async def test_delivery_trigger_spec_replaces_broker_spec(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    t1, t2, t1dls = (
        sinks.sink("t1", fail_first=3),
        sinks.sink("t2", fail_first=2),
        sinks.sink("t1dls"),
    )
    proc = await setup(
        start_broker,
        ky.broker(delivery={"retry": 0}),
        ky.trigger("t1", t1.url, delivery=ky.dls(t1dls.url, retry=3, **FAST)),
        ky.trigger("t2", t2.url, delivery={"retry": 1, **FAST}),
    )
    await proc.send(make_event("c1"))
    await t1.wait_for(4)
    await t2.wait_for(2)
    await asyncio.sleep(0.5)
    assert len(t1.received) == 4 and t1dls.received == []
    assert len(t2.received) == 2  # retry 1, then dropped: nobody's dead-letter sink


async def test_delivery_trigger_dls_wins(start_broker: StartBroker, sinks: SinkServer) -> None:
    t1, t2 = sinks.sink("t1", fail_first=4), sinks.sink("t2", fail_first=2)
    t1dls, bdls = sinks.sink("t1dls"), sinks.sink("bdls")
    proc = await setup(
        start_broker,
        ky.broker(delivery=ky.dls(bdls.url, retry=1, **FAST)),
        ky.trigger("t1", t1.url, delivery=ky.dls(t1dls.url, retry=3, **FAST)),
        ky.trigger("t2", t2.url),
    )
    await proc.send(make_event("e1"))
    await t1dls.wait_for(1)
    await bdls.wait_for(1)
    assert t1dls.ids() == ["e1"] and bdls.ids() == ["e1"]
    assert len(t1.received) == 4 and len(t2.received) == 2
    assert bdls.received[0].headers["ce-knativeerrordest"] == t2.url


async def test_delivery_trigger_dls_not_used_on_success(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    t1, t1dls, bdls = sinks.sink("t1", fail_first=3), sinks.sink("t1dls"), sinks.sink("bdls")
    proc = await setup(
        start_broker,
        ky.broker(delivery=ky.dls(bdls.url, retry=1, **FAST)),
        ky.trigger("t1", t1.url, delivery=ky.dls(t1dls.url, retry=3, **FAST)),
    )
    await proc.send(make_event("d1"))
    await t1.wait_for(4)
    await asyncio.sleep(0.5)
    assert t1dls.received == [] and bdls.received == []


# --- dead-letter extensions -----------------------------------------------------------------


async def test_dead_letter_extensions(start_broker: StartBroker, sinks: SinkServer) -> None:
    dls = sinks.sink("dls")
    nobody = sinks.sink("nobody", fail_first=99, fail_status=422)
    body = sinks.sink("body", fail_first=99, fail_status=422, fail_body=b"order rejected")
    unreachable = "http://127.0.0.1:9/unreachable"
    proc = await setup(
        start_broker,
        ky.broker(delivery=ky.dls(dls.url, retry=0)),
        ky.trigger("unreachable", unreachable, attributes={"type": "u"}),
        ky.trigger("nobody", nobody.url, attributes={"type": "n"}),
        ky.trigger("body", body.url, attributes={"type": "b"}),
    )
    for i, t in enumerate(("u", "n", "b")):
        await proc.send(make_event(f"x{i}", type=t))
    await dls.wait_for(3)
    by_type = {r.headers["ce-type"]: r.headers for r in dls.received}
    assert by_type["u"]["ce-knativeerrordest"] == unreachable
    assert by_type["u"]["kn-namespace"] == "default"
    assert by_type["n"]["ce-knativeerrorcode"] == "422"
    assert "ce-knativeerrordata" not in by_type["n"]
    assert base64.b64decode(by_type["b"]["ce-knativeerrordata"]) == b"order rejected"


# --- ingress data plane ---------------------------------------------------------------------


@pytest.mark.parametrize("specversion", ["1.0", "0.3"])
@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_ingress_versions_and_modes(
    start_broker: StartBroker, sinks: SinkServer, specversion: str, mode: str
) -> None:
    s = sinks.sink("s")
    proc = await setup(start_broker, ky.broker(), ky.trigger("t", s.url))
    ev = make_event("v1")
    ev.attributes["specversion"] = specversion
    resp = await proc.send(ev, mode=mode)
    assert resp.status_code == 202
    got = await s.wait_for(1)
    assert got[0].specversion == specversion  # never upgraded
    # Binary data is byte-exact; structured `data` is a JSON value, re-serialised once.
    assert json.loads(s.received[0].body) == {"hello": "world"}
    if mode == "binary":
        assert s.received[0].body == b'{"hello": "world"}'


async def test_ingress_rejections(start_broker: StartBroker) -> None:
    proc = await setup(start_broker, ky.broker())
    url = proc.broker_url()
    assert (await proc.client.get(url)).status_code == 405
    base = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    for missing in base:
        headers = {k: v for k, v in base.items() if k != missing}
        resp = await proc.client.post(url, headers=headers, content=b"")
        assert resp.status_code == 400, missing
    resp = await proc.client.post(url, headers={**base, "ce-specversion": "2.0"}, content=b"")
    assert resp.status_code == 400
    resp = await proc.client.post(f"{proc.base}/default/missing", headers=base, content=b"")
    assert resp.status_code == 404
    assert (await proc.client.get(f"{proc.base}/healthz")).status_code == 200


async def test_long_message_and_long_reply(start_broker: StartBroker, sinks: SinkServer) -> None:
    big = bytes(range(256)) * 144  # 36 KiB, every byte value
    reply_data = b"r" * 36 * 1024

    def reply(ev):  # type: ignore[no-untyped-def]
        if ev.type != "big":
            return None
        out = make_event("reply", type="big.reply", data=None)
        out.data = reply_data
        return out

    s = sinks.sink("s", reply=reply)
    r = sinks.sink("r")
    proc = await setup(
        start_broker,
        ky.broker(),
        ky.trigger("t", s.url, attributes={"type": "big"}),
        ky.trigger("r", r.url, attributes={"type": "big.reply"}),
    )
    ev = make_event("big1", type="big", data=None)
    ev.attributes["datacontenttype"] = "application/octet-stream"
    ev.data = big
    assert (await proc.send(ev)).status_code == 202
    await s.wait_for(1)
    assert s.received[0].body == big
    await r.wait_for(1)
    assert r.received[0].body == reply_data


async def test_delivered_events_read_by_cloudevents_sdk(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    from cloudevents.core.bindings import http as ce_http

    s = sinks.sink("s")
    proc = await setup(start_broker, ky.broker(), ky.trigger("t", s.url))
    ev = make_event("sdk1", type="sdk.check", subject="héllo wörld 100%", myext="a b")
    await proc.send(ev)
    await s.wait_for(1)
    got = s.received[0]
    sdk_event = ce_http.from_http_event(ce_http.HTTPMessage(headers=got.headers, body=got.body))
    assert sdk_event.get_id() == "sdk1"
    assert sdk_event.get_subject() == "héllo wörld 100%"
    assert sdk_event.get_extension("myext") == "a b"
    assert sdk_event.get_data() == {"hello": "world"}
