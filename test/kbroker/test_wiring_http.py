"""serve()'s drain, on a real socket with raw HTTP/1.1 clients (timing is the point).

slow app (answers after `delay`) <-- raw keep-alive connections
stop set mid-request: the answer still comes, with Connection: close
stop set while a connection idles: a request sent within idle_linger is still answered
a request longer than the grace period: cancelled, connection closed, serve returns
"""

from __future__ import annotations

import asyncio
import time

import pytest
from kbroker.core.settings import ShutdownSettings
from starlette.types import Receive, Scope, Send

from kbroker import wiring, wiring_http


class SlowApp:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.started = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.started.set()
        await asyncio.sleep(self.delay)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]}
        )
        await send({"type": "http.response.body", "body": b"done"})


REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers


async def start(
    app: SlowApp, settings: ShutdownSettings
) -> tuple[asyncio.Task[None], int, asyncio.Event]:
    sock = wiring.bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    task = asyncio.create_task(wiring_http.serve("test", app, [sock], settings, stop))
    return task, port, stop


async def test_request_in_flight_gets_its_answer_with_connection_close() -> None:
    app = SlowApp(delay=0.5)
    task, port, stop = await start(app, ShutdownSettings(grace=5.0))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    await app.started.wait()
    stop.set()
    status, headers = await asyncio.wait_for(read_response(reader), 5)
    assert status == 200
    assert headers["connection"] == "close"
    assert await reader.read() == b""  # closed after the answer
    await asyncio.wait_for(task, 5)
    writer.close()


async def test_idle_keep_alive_connection_is_answered_within_the_linger() -> None:
    app = SlowApp(delay=0.0)
    task, port, stop = await start(app, ShutdownSettings(grace=5.0, idle_linger=1.0))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    assert (await read_response(reader))[0] == 200  # now idle, kept alive
    stop.set()
    await asyncio.sleep(0.3)  # the drain has begun; the client has not heard of it
    with pytest.raises(OSError):  # no new connections
        await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    status, headers = await asyncio.wait_for(read_response(reader), 5)
    assert (status, headers["connection"]) == (200, "close")
    await asyncio.wait_for(task, 5)
    writer.close()


async def test_idle_connection_is_closed_after_the_linger() -> None:
    app = SlowApp(delay=0.0)
    task, port, stop = await start(app, ShutdownSettings(grace=5.0, idle_linger=0.2))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    assert (await read_response(reader))[0] == 200
    began = time.monotonic()
    stop.set()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    await asyncio.wait_for(task, 5)
    assert 0.2 <= time.monotonic() - began < 2.0  # the linger, not the grace period
    writer.close()


async def test_connection_idle_since_before_the_drain_is_closed_at_once() -> None:
    app = SlowApp(delay=0.0)
    task, port, stop = await start(app, ShutdownSettings(grace=5.0, idle_linger=1.0))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    assert (await read_response(reader))[0] == 200
    await asyncio.sleep(1.2)  # idle longer than the linger already
    began = time.monotonic()
    stop.set()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert time.monotonic() - began < 0.6
    await asyncio.wait_for(task, 5)
    writer.close()


async def test_request_longer_than_the_grace_period_is_cut() -> None:
    app = SlowApp(delay=30.0)
    task, port, stop = await start(app, ShutdownSettings(grace=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    await app.started.wait()
    began = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - began < 2.0
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
