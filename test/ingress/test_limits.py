"""Ingress resource limits on the real server (uvicorn + the bounded protocol) on port 0.

raw sockets --> serve(build_app(memory channel), http=bounded_protocol(limits, Metrics))

- header block: too many headers / too many bytes (at once, or trickled) -> 431
- time: slow headers -> 408, slow body -> 408, idle keep-alive closed; a slowloris crowd is
  closed while a normal client's requests stay fast
- connections: over the cap a new connection gets 503 and the open ones keep working
- body budget: clients holding bodies one byte short pin at most the budget; the excess gets 503
  + Retry-After at once, and the budget is given back when requests end
- event caps, whatever the mode: an 800 KB event in binary and as data_base64; attribute count
  and bytes in both modes
- every refusal is counted in kbroker_ingress_rejected_total{reason}
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kbroker.core import contract, events
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.metrics import Metrics
from kbroker.core.settings import IngressSettings, ServerLimits, ShutdownSettings
from kbroker.ingress.app import build_app
from kbroker.ingress.protocol import bounded_protocol

from kbroker import wiring, wiring_http

BROKER = contract.Broker("ns", "b", "uid", "http://x/ns/b", channel="memory")
CE = b"ce-specversion: 1.0\r\nce-id: 1\r\nce-source: /s\r\nce-type: t\r\n"


@dataclass
class Server:
    port: int
    metrics: Metrics
    channel: MemoryChannel

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    def refused(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "kbroker_ingress_rejected_total", {"reason": reason}
        )
        return value or 0.0

    async def post(self, body: bytes = b"{}", extra: bytes = b"") -> tuple[int, dict[str, str]]:
        reader, writer = await self.connect()
        try:
            writer.write(request(body, extra))
            return await read_response(reader)
        finally:
            writer.close()


def request(body: bytes, extra: bytes = b"", length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return (
        b"POST /ns/b HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        + CE
        + extra
        + b"content-length: %d\r\n\r\n" % n
        + body
    )


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers


async def closed(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True once the server closed the connection (whatever it said first)."""
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except TimeoutError:
        return False
    except ConnectionError:  # reset: the client wrote after the server closed
        return True
    return True


async def _ready() -> tuple[bool, str]:
    return True, "ok"


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start() -> AsyncIterator[StartServer]:
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def run(**server: Any) -> Server:
        settings = IngressSettings(server=dataclasses.replace(ServerLimits(), **server))
        channel = MemoryChannel()
        holder = ContractHolder(contract.Contract(1, (BROKER,)))
        metrics = Metrics()
        app = build_app(settings, {"memory": channel}, holder, _ready, observer=metrics)
        sock = wiring.bind("127.0.0.1", 0)
        stop = asyncio.Event()
        http = bounded_protocol(settings.server, metrics, settings.retry_after)
        task = asyncio.create_task(
            wiring_http.serve("test", app, [sock], ShutdownSettings(grace=1.0), stop, protocol=http)
        )
        stops.append((stop, task))
        return Server(sock.getsockname()[1], metrics, channel)

    yield run
    for stop, task in stops:
        stop.set()
        await asyncio.wait_for(task, 10)


# -- header block ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (b"".join(b"x-h%d: v\r\n" % i for i in range(129)), "header_count"),
        (b"x-big: " + b"a" * 70_000 + b"\r\n", "header_size"),
        (b"".join(b"x-h%d: %s\r\n" % (i, b"b" * 1000) for i in range(70)), "header_size"),
    ],
    ids=["count", "one-big-header", "many-1k-headers"],
)
async def test_header_block_over_the_limits_is_431(
    start: StartServer, extra: bytes, reason: str
) -> None:
    srv = await start()
    status, headers = await srv.post(extra=extra)
    assert status == 431
    assert headers["connection"] == "close"
    assert srv.refused(reason) == 1
    assert (await srv.post())[0] == 202  # the server is fine


async def test_trickled_header_block_is_refused_before_it_is_complete(start: StartServer) -> None:
    srv = await start()
    reader, writer = await srv.connect()
    writer.write(b"POST /ns/b HTTP/1.1\r\nhost: t\r\n")
    for i in range(80):  # 80 KB of headers, never finished
        writer.write(b"x-h%d: %s\r\n" % (i, b"c" * 1000))
        await writer.drain()
    status, _ = await read_response(reader)
    assert status == 431
    writer.close()


async def test_headers_at_the_limits_are_accepted(start: StartServer) -> None:
    srv = await start()
    # 128 headers in all (7 in `request`), and just under 60 KiB of request line + headers.
    pad = 128 - 7
    fill = (60 * 1024 - 300 - len(request(b"{}"))) // pad - len(b"x-h000: \r\n")
    extra = b"".join(b"x-h%03d: %s\r\n" % (i, b"v" * fill) for i in range(pad))
    assert 59 * 1024 < len(request(b"{}", extra)) < 60 * 1024
    status, _ = await srv.post(extra=extra)
    assert status == 202


# -- time -----------------------------------------------------------------------------------------


async def test_slow_headers_get_408(start: StartServer) -> None:
    srv = await start(header_timeout=1.0)
    reader, writer = await srv.connect()
    writer.write(b"POST /ns/b HTTP/1.1\r\nhost: t\r\n")
    started = time.monotonic()
    status, headers = await read_response(reader)
    assert status == 408 and headers["connection"] == "close"
    assert 0.9 < time.monotonic() - started < 2.5
    assert await closed(reader, 1)
    assert srv.refused("header_timeout") == 1


async def test_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    start: StartServer,
) -> None:
    srv = await start(header_timeout=1.0)
    reader, writer = await srv.connect()
    assert await closed(reader, 3)
    writer.close()


async def test_slow_body_gets_408(start: StartServer) -> None:
    srv = await start(body_grace=1.0, min_body_rate=1000)
    reader, writer = await srv.connect()
    writer.write(request(b"", length=10_000))

    async def trickle() -> None:
        for _ in range(20):
            writer.write(b"x")
            await asyncio.sleep(0.2)

    feeder = asyncio.create_task(trickle())
    started = time.monotonic()
    status, _ = await read_response(reader)
    assert status == 408
    assert time.monotonic() - started < 2.5
    feeder.cancel()
    writer.close()
    assert srv.refused("body_timeout") == 1


async def test_idle_keep_alive_connection_is_closed(start: StartServer) -> None:
    srv = await start(idle_timeout=1.0)
    reader, writer = await srv.connect()
    writer.write(request(b"{}"))
    assert (await read_response(reader))[0] == 202
    started = time.monotonic()
    assert await closed(reader, 3)
    assert 0.8 < time.monotonic() - started < 2.0
    assert srv.refused("idle_timeout") == 1
    writer.close()


async def test_slowloris_crowd_is_closed_and_normal_clients_stay_fast(start: StartServer) -> None:
    srv = await start(header_timeout=1.5)
    crowd = 300
    conns = [await srv.connect() for _ in range(crowd)]

    async def loris(writer: asyncio.StreamWriter) -> None:
        writer.write(b"POST /ns/b HTTP/1.1\r\n")
        for i in range(100):
            await asyncio.sleep(0.5)
            if writer.is_closing():
                return
            writer.write(b"x-%d: 1\r\n" % i)

    lorises = [asyncio.create_task(loris(w)) for _, w in conns]
    latencies = []
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        assert (await srv.post())[0] == 202
        latencies.append(time.monotonic() - t0)
        await asyncio.sleep(0.05)
    results = await asyncio.gather(*(closed(r, 2.0) for r, _ in conns))
    for t in lorises:
        t.cancel()
    assert all(results), f"{results.count(False)} slow connections still open"
    assert srv.refused("header_timeout") == crowd
    latencies.sort()
    assert latencies[len(latencies) * 99 // 100] < 0.25, latencies[-5:]


# -- connections ----------------------------------------------------------------------------------


async def test_connections_over_the_cap_get_503_and_the_open_ones_keep_working(
    start: StartServer,
) -> None:
    srv = await start(max_connections=5)
    conns = [await srv.connect() for _ in range(5)]
    await asyncio.sleep(0.1)
    reader, writer = await srv.connect()
    status, headers = await read_response(reader)
    assert status == 503 and headers["retry-after"] == "1"
    assert await closed(reader, 1)
    writer.close()
    for r, w in conns:
        w.write(request(b"{}"))
        assert (await read_response(r))[0] == 202
    assert srv.refused("connections") == 1
    for _, w in conns:
        w.close()


async def test_body_over_the_size_cap_is_413_before_it_is_read(start: StartServer) -> None:
    srv = await start()
    reader, writer = await srv.connect()
    writer.write(request(b"", length=16 * 1024 * 1024 + 1))  # the body never comes
    assert (await read_response(reader))[0] == 413
    assert srv.refused("body_size") == 1
    writer.close()


# -- body budget ----------------------------------------------------------------------------------


async def test_bodies_held_one_byte_short_are_bounded_by_the_budget(start: StartServer) -> None:
    mib = 1024 * 1024
    srv = await start(max_buffered_body_bytes=40 * mib)
    size = 15 * mib
    body = json.dumps({"k": "x" * (size - 10)}).encode()
    holders = []
    answers: list[int] = []
    for _ in range(4):  # 2 fit in 40 MiB, 2 do not
        reader, writer = await srv.connect()
        writer.write(request(body[:-1], length=len(body)))
        holders.append((reader, writer))
    await asyncio.sleep(0.5)
    for reader, _ in holders:
        try:
            status, headers = await asyncio.wait_for(read_response(reader), 0.5)
        except TimeoutError:
            continue  # still being held
        answers.append(status)
        assert headers["retry-after"] == "1"
    assert answers == [503, 503]
    assert srv.refused("body_budget") == 2
    # A held request completes; its share of the budget comes back and a new one fits.
    reader, writer = holders[0]
    writer.write(body[-1:])
    assert (await read_response(reader))[0] == 413  # 15 MiB event: over the event cap
    status, _ = await srv.post(b"{}")
    assert status == 202
    reader, writer = await srv.connect()
    writer.write(request(body[:-1], length=len(body)))
    with pytest.raises(TimeoutError):  # held, not refused: the budget has room again
        await asyncio.wait_for(read_response(reader), 0.5)
    for _, w in [*holders, (reader, writer)]:
        w.close()


async def test_chunked_bodies_are_counted_against_the_budget(start: StartServer) -> None:
    srv = await start(max_buffered_body_bytes=16 * 1024 * 1024 + 100)
    _, hold_w = await srv.connect()
    head = b"POST /ns/b HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n" + CE
    hold_w.write(head + b"transfer-encoding: chunked\r\n\r\n")
    chunk = b"y" * (1024 * 1024)
    for _ in range(12):
        hold_w.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    await hold_w.drain()
    await asyncio.sleep(1.0)
    status, headers = await srv.post(b"z" * (5 * 1024 * 1024))
    assert status == 503 and headers["retry-after"] == "1"
    hold_w.close()
    await asyncio.sleep(0.3)
    assert (await srv.post(b"{}"))[0] == 202  # released on disconnect


# -- event caps whatever the mode -----------------------------------------------------------------


def _event(n_ext: int = 0, ext_value: str = "v", data: bytes = b"{}") -> events.CloudEvent:
    attrs: dict[str, events.AttrValue] = {
        "specversion": "1.0",
        "id": "1",
        "source": "/s",
        "type": "t",
        **{f"x{i:03d}": ext_value for i in range(n_ext)},
    }
    return events.CloudEvent(attrs, data)


def _encode(ev: events.CloudEvent, mode: str) -> bytes:
    if mode == "binary":
        hdrs, body = events.encode_binary(ev)
    else:
        hdrs, body = events.encode_structured(ev)
    head = b"".join(f"{k}: {v}\r\n".encode() for k, v in hdrs)
    return (
        b"POST /ns/b HTTP/1.1\r\nhost: t\r\n"
        + head
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


async def _send(srv: Server, raw: bytes) -> int:
    reader, writer = await srv.connect()
    writer.write(raw)
    status, _ = await read_response(reader)
    writer.close()
    return status


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_800kb_binary_event_is_accepted_in_both_modes(start: StartServer, mode: str) -> None:
    srv = await start()
    ev = _event(data=bytes(range(256)) * 3200)  # 800 KB of binary data
    ev.attributes["datacontenttype"] = "application/octet-stream"
    raw = _encode(ev, mode)
    if mode == "structured":
        assert b"data_base64" in raw and len(raw) > 1024 * 1024  # inflated over the event cap
    assert await _send(srv, raw) == 202


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize(
    ("n_ext", "value", "status"),
    [
        (96, "v", 202),  # 100 attributes
        (97, "v", 400),  # 101
        (95, "v" * 500, 202),  # 47 KiB of ce- headers (95 x "ce-x000: " + 500)
        (95, "v" * 520, 413),  # 49 KiB: over the 48 KiB attribute cap
        (95, "é" * 100, 413),  # 10 KiB of text, 57 KiB percent-encoded as headers
    ],
    ids=["100-attrs", "101-attrs", "attr-bytes-at-cap", "attr-bytes-over", "percent-encoded-over"],
)
async def test_attribute_caps_are_the_same_in_both_modes(
    start: StartServer, mode: str, n_ext: int, value: str, status: int
) -> None:
    srv = await start()
    assert await _send(srv, _encode(_event(n_ext, value), mode)) == status


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_broker_extensions_do_not_count(start: StartServer, mode: str) -> None:
    srv = await start()
    ev = _event(96, "v" * 400)  # 100 attributes, 40 KiB
    ev.attributes.update(
        knativearrivaltime="2026-01-01T00:00:00.000000Z",
        knativebrokerttl="254",
        knativeerrordest="http://subscriber.example/with/a/path",
        knativeerrorcode="500",
        knativeerrordata="QUJD" * 256,  # 1 KiB, the dispatcher's cap
    )
    assert await _send(srv, _encode(ev, mode)) == 202


def test_structured_body_cap_covers_base64_but_the_event_cap_applies_decoded() -> None:
    ev = _event(data=b"\x00" * (1024 * 1024))  # 1 MiB + attributes: over the event cap
    hdrs, body = events.encode_structured(ev)
    with pytest.raises(events.PayloadTooLarge, match="event of"):
        events.decode_http([(k.encode(), v.encode()) for k, v in hdrs], body)


def test_settings_refuse_limits_the_broker_could_not_deliver() -> None:
    with pytest.raises(ValueError, match="max_header_count"):
        IngressSettings(server=ServerLimits(max_header_count=100))
    with pytest.raises(ValueError, match="max_header_bytes"):
        IngressSettings(server=ServerLimits(max_header_bytes=16 * 1024))
    with pytest.raises(ValueError, match="max_buffered_body_bytes"):
        IngressSettings(server=ServerLimits(max_buffered_body_bytes=1024))
