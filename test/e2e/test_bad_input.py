"""Hostile and malformed input against the real process: each gets its specific 4xx, nothing is
stored, and the broker stays healthy and keeps delivering.

    attacker/garbage --> kbroker run --> sink (must see only the good event)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from e2e import knative_yaml as ky
from fixtures.broker import BrokerProcess, StartBroker, make_event
from fixtures.subscriber import SinkServer

BASE = {"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/s", "ce-type": "t"}
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def one(**over: object) -> dict[str, object]:
    return {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **over}


CASES: list[tuple[str, dict[str, str], bytes, int]] = [
    ("bad specversion", {**BASE, "ce-specversion": "9.9"}, b"", 400),
    ("empty id", {**BASE, "ce-id": ""}, b"", 400),
    ("upper-case attribute name", {**BASE, "ce-BadName": "v"}, b"", 202),  # HTTP names fold case
    ("invalid attribute name", {**BASE, "ce-bad_name": "v"}, b"", 400),
    ("invalid utf-8 in header", {**BASE, "ce-subject": "%C0%A0"}, b"", 400),
    ("datacontenttype header in binary", {**BASE, "ce-datacontenttype": "text/plain"}, b"", 400),
    ("bad time", {**BASE, "ce-time": "yesterday"}, b"", 400),
    ("structured not json", STRUCTURED, b"{nope", 400),
    ("structured array", STRUCTURED, b"[1,2]", 400),
    (
        "structured data and data_base64",
        STRUCTURED,
        orjson.dumps(one(data="a", data_base64="YQ==")),
        400,
    ),
    ("structured object attribute", STRUCTURED, orjson.dumps(one(myext={"a": 1})), 400),
    ("structured float attribute", STRUCTURED, orjson.dumps(one(myext=1.5)), 400),
    ("structured int32 overflow", STRUCTURED, orjson.dumps(one(myext=2**40)), 400),
    (
        "json bomb",
        STRUCTURED,
        b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}",
        400,
    ),
    ("batch mixed specversions", BATCH, orjson.dumps([one(), one(id="2", specversion="0.3")]), 400),
    ("batch not a list", BATCH, orjson.dumps(one()), 400),
    ("batch too many events", BATCH, orjson.dumps([one(id=str(i)) for i in range(1001)]), 413),
    ("unknown format", {"content-type": "application/cloudevents+xml"}, b"<x/>", 415),
]


@pytest.fixture
async def broker_and_sink(start_broker: StartBroker, sinks: SinkServer):  # type: ignore[no-untyped-def]
    sink = sinks.sink("s")
    proc = await start_broker({"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url))})
    await proc.wait_ready_object("Trigger", "t")
    return proc, sink


async def test_each_bad_request_gets_its_status(broker_and_sink) -> None:  # type: ignore[no-untyped-def]
    proc, sink = broker_and_sink
    url = proc.broker_url()
    for name, headers, body, status in CASES:
        resp = await proc.client.post(url, headers=headers, content=body)
        assert resp.status_code == status, f"{name}: {resp.status_code} {resp.text}"
        if status >= 400:
            assert resp.text.strip(), f"{name}: an error must say what is wrong"
    # Oversized bodies: announced by Content-Length, and streamed without one.
    resp = await proc.client.post(url, headers=BASE, content=b"x" * (17 * 1024 * 1024))
    assert resp.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * (1024 * 1024)

    resp = await proc.client.post(url, headers=BASE, content=chunks())
    assert resp.status_code == 413
    # Still healthy, and only the one valid event above was delivered.
    assert (await proc.client.get(f"{proc.base}/healthz")).status_code == 200
    assert (await proc.send(make_event("good"))).status_code == 202
    await sink.wait_for(2)
    await asyncio.sleep(0.3)
    assert sorted(sink.ids()) == ["good", "x"]


async def test_garbage_bytes_on_the_socket_do_not_hurt(broker_and_sink) -> None:  # type: ignore[no-untyped-def]
    proc, sink = broker_and_sink
    for junk in (
        b"\x00\xff garbage\r\n\r\n",
        b"POST /default/default HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
        b"GET / HTTP/9.9\r\n\r\n",
    ):
        _, writer = await asyncio.open_connection("127.0.0.1", proc.port)
        writer.write(junk)
        await writer.drain()
        writer.close()
    await asyncio.sleep(0.2)
    assert (await proc.client.get(f"{proc.base}/healthz")).status_code == 200
    assert (await proc.send(make_event("after"))).status_code == 202
    await sink.wait_for(1)


async def test_unknown_broker_and_methods(broker_and_sink) -> None:  # type: ignore[no-untyped-def]
    proc: BrokerProcess = broker_and_sink[0]
    async with httpx.AsyncClient() as client:
        for method in ("PUT", "DELETE", "PATCH"):
            resp = await client.request(method, proc.broker_url(), content=b"")
            assert resp.status_code == 405
        resp = await client.post(f"{proc.base}/other/broker", headers=BASE)
        assert resp.status_code == 404
