"""Ingress resource attacks against the real `kbroker run`, measured from outside the process.

    raw sockets / httpx --> kbroker run --max-buffered-body-bytes ... --header-timeout ...
                             (RSS read from /proc/<pid>/status)

- body hoarding: N clients each announce a 15 MB body and send all of it but the last byte; the
  process's RSS grows by less than the documented bound (2 x max_buffered_body_bytes) and the
  clients over the budget get 503 + Retry-After;
- slowloris: a crowd of connections trickling header bytes is closed after the header timeout,
  while a normal client's requests keep their latency;
- what the broker accepts it can deliver: an event at the attribute caps is delivered and the
  subscriber's reply carrying the same attributes is accepted back; an event over them is
  refused at ingress instead of being accepted and then undeliverable as headers.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from e2e import knative_yaml as ky
from fixtures.broker import BrokerProcess, StartBroker, make_event
from fixtures.subscriber import SinkServer
from kbroker.core import events

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


def rss(proc: BrokerProcess) -> int:
    assert proc.proc is not None
    with open(f"/proc/{proc.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def hoard(port: int, clients: int, size: int) -> tuple[list[asyncio.StreamWriter], list[int]]:
    """`clients` connections each send a `size`-byte body but its last byte; returns the open
    writers and the statuses answered meanwhile (the others are being held)."""
    head = (
        b"POST /default/default HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"ce-specversion: 1.0\r\nce-id: h\r\nce-source: /h\r\nce-type: h\r\n"
        b"content-length: %d\r\n\r\n" % size
    )
    chunk = b"x" * MIB
    statuses: list[int] = []

    async def one() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        left = size - 1
        try:
            while left:
                n = min(left, len(chunk))
                writer.write(chunk[:n])
                await writer.drain()
                left -= n
        except ConnectionError:
            pass
        try:
            line = await asyncio.wait_for(reader.readline(), 2.0)
            statuses.append(int(line.split()[1]))
            rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
            assert b"retry-after: 1" in rest.lower()
        except (TimeoutError, ConnectionError, IndexError, asyncio.IncompleteReadError):
            pass  # held: no answer while the body is incomplete
        return writer

    writers = await asyncio.gather(*(one() for _ in range(clients)))
    return list(writers), statuses


async def test_body_hoarding_is_bounded_by_the_budget(start_broker: StartBroker) -> None:
    budget = 64 * MIB
    proc = await start_broker(
        {"b.yaml": ky.dump(ky.broker())}, ["--max-buffered-body-bytes", str(budget)]
    )
    await proc.wait_ready_object("Broker", "default")
    before = rss(proc)
    clients, size = 40, 15 * 1000 * 1000
    writers, statuses = await hoard(proc.port, clients, size)
    await asyncio.sleep(0.5)
    during = rss(proc)
    held = clients - len(statuses)
    print(f"RSS before {before / MIB:.0f} MiB, holding {during / MIB:.0f} MiB; {held} held")
    assert during - before < 2 * budget
    assert held == budget // size  # 4 bodies fit in 64 MiB
    assert statuses == [503] * (clients - held)
    for w in writers:
        w.close()
    await asyncio.sleep(0.5)
    assert (await proc.send(make_event("after"))).status_code == 202


async def test_slowloris_is_closed_and_normal_clients_keep_their_latency(
    start_broker: StartBroker,
) -> None:
    proc = await start_broker({"b.yaml": ky.dump(ky.broker())}, ["--header-timeout", "2"])
    await proc.wait_ready_object("Broker", "default")

    async def latencies(n: int) -> list[float]:
        out = []
        for i in range(n):
            t0 = time.monotonic()
            assert (await proc.send(make_event(f"n{i}"))).status_code == 202
            out.append(time.monotonic() - t0)
            await asyncio.sleep(0.02)
        return out

    baseline = statistics.median(await latencies(20))
    crowd = []
    for _ in range(300):
        crowd.append(await asyncio.open_connection("127.0.0.1", proc.port))

    async def loris(writer: asyncio.StreamWriter) -> None:
        writer.write(b"POST /default/default HTTP/1.1\r\n")
        for i in range(30):
            await asyncio.sleep(1.0)
            try:
                writer.write(b"x-%d: 1\r\n" % i)
            except ConnectionError:
                return

    lorises = [asyncio.create_task(loris(w)) for _, w in crowd]
    attacked = await latencies(40)

    async def is_closed(reader: asyncio.StreamReader) -> bool:
        try:
            while await asyncio.wait_for(reader.read(65536), 3.0):
                pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    closed = await asyncio.gather(*(is_closed(r) for r, _ in crowd))
    for t in lorises:
        t.cancel()
    for _, w in crowd:
        w.close()
    print(
        f"median latency {baseline * 1000:.1f} ms,"
        f" under attack {statistics.median(attacked) * 1000:.1f} ms"
    )
    assert all(closed), f"{closed.count(False)} of {len(crowd)} slow connections still open"
    assert statistics.median(attacked) < 3 * baseline + 0.05


def _with_attributes(ev: events.CloudEvent, count: int, value: str) -> events.CloudEvent:
    for i in range(count):
        ev.attributes[f"x{i:03d}"] = value
    return ev


async def test_what_ingress_accepts_it_delivers_and_takes_back_as_a_reply(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    def reply(ev: events.CloudEvent) -> events.CloudEvent:
        out = events.CloudEvent(dict(ev.attributes), ev.data)
        out.attributes["type"] = "big.reply"
        out.attributes["id"] = "r-" + ev.id
        return out

    echo = sinks.sink("echo", reply=reply)
    replies = sinks.sink("replies")
    proc = await start_broker(
        {
            "o.yaml": ky.dump(
                ky.broker(),
                ky.trigger("t1", echo.url, attributes={"type": "big"}),
                ky.trigger("t2", replies.url, attributes={"type": "big.reply"}),
            )
        }
    )
    for kind, name in (("Broker", "default"), ("Trigger", "t1"), ("Trigger", "t2")):
        await proc.wait_ready_object(kind, name)
    # At the caps: 100 attributes (4 required + datacontenttype + 95), 47 KiB as headers.
    at_caps = _with_attributes(make_event("a1", type="big"), 95, "v" * 500)
    assert len(at_caps.attributes) == 100
    assert (await proc.send(at_caps, mode="structured")).status_code == 202
    got = await replies.wait_for(1, timeout=20)
    assert got[0].id == "r-a1"
    assert all(got[0].attributes[f"x{i:03d}"] == "v" * 500 for i in range(95))
    assert echo.ids() == ["a1"]
    # Over them: a structured event whose one extension would be a 100 KiB header.
    over = _with_attributes(make_event("o1", type="big"), 1, "w" * 100_000)
    assert (await proc.send(over, mode="structured")).status_code == 413
    over = _with_attributes(make_event("o2", type="big"), 200, "w")
    assert (await proc.send(over, mode="structured")).status_code == 400
