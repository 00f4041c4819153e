"""serve()'s drain, on a real socket with raw HTTP/1.1 clients (timing is the point).

slow app (answers after `delay`) <-- raw keep-alive connections
stop set mid-request: the answer still comes, with Connection: close
stop set while a connection idles: a request sent within idle_linger is still answered
a request longer than the grace period: cancelled, connection closed, serve returns
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cryptography import x509
from fixtures.certs import ServerCerts
from kbroker.core import tls
from kbroker.core.settings import ShutdownSettings, TlsSettings
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


# -- https, with the certificate rotated under load ------------------------------------------------


async def _https_request(
    port: int, ca: Path, keep: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
) -> tuple[int, int, tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """(status, serial of the certificate the connection was shown, the connection)."""
    if keep is None:
        keep = await asyncio.open_connection("127.0.0.1", port, ssl=tls.client_context(ca))
    reader, writer = keep
    writer.write(REQUEST)
    status, _ = await asyncio.wait_for(read_response(reader), 5)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return status, int(x509.load_der_x509_certificate(der).serial_number), keep


async def test_certificate_rotates_under_load_without_a_failed_request(
    server_certs: ServerCerts,
) -> None:
    live = tls.ReloadingServerContext(
        TlsSettings(cert=server_certs.cert, key=server_certs.key, poll_interval=0.05)
    )
    sock = wiring.bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    reloader = asyncio.create_task(live.run())
    task = asyncio.create_task(
        wiring_http.serve(
            "test", SlowApp(0.0), [sock], ShutdownSettings(grace=5.0), stop, tls=live.context
        )
    )
    ca = server_certs.ca.path
    new_conns: list[tuple[bool, int]] = []  # (opened after the reload, serial), one per connection
    kept: list[int] = []  # serials seen on one keep-alive connection across the rotation
    statuses: list[int] = []

    async def fresh_connections() -> None:
        while not stop.is_set():
            after = live.reloads > 0
            status, serial, (_, writer) = await _https_request(port, ca)
            writer.close()
            statuses.append(status)
            new_conns.append((after, serial))

    async def keep_alive() -> None:
        status, serial, conn = await _https_request(port, ca)
        while not stop.is_set():
            statuses.append(status)
            kept.append(serial)
            status, serial, conn = await _https_request(port, ca, conn)
        conn[1].close()

    await asyncio.sleep(0.2)  # listening
    clients = [asyncio.create_task(fresh_connections()) for _ in range(4)]
    clients.append(asyncio.create_task(keep_alive()))
    await asyncio.sleep(0.5)
    server_certs.ca.issue(server_certs.cert, server_certs.key, serial=2, mtime=time.time() + 5)
    deadline = time.monotonic() + 5
    while live.reloads == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)  # any failed request raises here
    await asyncio.wait_for(task, 5)
    reloader.cancel()

    assert live.reloads == 1
    assert statuses and set(statuses) == {200}
    assert {s for after, s in new_conns if not after} == {1}
    assert {s for after, s in new_conns if after} == {2}  # every new connection: the new one
    assert set(kept) == {1}  # an open connection keeps the session it negotiated
    assert len(new_conns) > 20


async def test_plain_http_when_no_tls() -> None:
    app = SlowApp(delay=0.0)
    task, port, stop = await start(app, ShutdownSettings(grace=1.0))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    assert (await read_response(reader))[0] == 200
    writer.close()
    stop.set()
    await asyncio.wait_for(task, 5)
