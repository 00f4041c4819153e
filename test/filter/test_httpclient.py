"""The raw delivery client against real servers: keep-alive, idle connections closed by the
server, chunked and closing responses, timeouts, refusals, the response cap and the https fallback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from aiohttp import web
from kbroker.filter import httpclient
from kbroker.filter.httpclient import HttpClient
from kbroker.filter.sender import Response, SendError


class Fallback:
    def __init__(self) -> None:
        self.urls: list[str] = []

    async def send(
        self, url: str, headers: Sequence[tuple[str, str]], body: bytes, timeout: float | None
    ) -> Response:
        self.urls.append(url)
        return Response(299, {}, (), b"")

    async def close(self) -> None:
        pass


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.Response(status=201, body=body, headers={"x-seen": request.headers["x-a"]})

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"ab", b"cd", b"ef"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def closing(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, body=b"bye", headers={"connection": "close"})

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response(status=200)

    async def huge(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, body=b"x" * (httpclient.MAX_RESPONSE_BYTES + 10))

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/closing", closing)
    app.router.add_post("/slow", slow)
    app.router.add_post("/huge", huge)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=0.3)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_round_trip_and_keep_alive(server: str) -> None:
    base = server
    client = HttpClient(Fallback())
    for i in range(5):
        resp = await client.send(f"{base}/echo", [("x-a", str(i))], b"body%d" % i, 5.0)
        assert (resp.status, resp.body, resp.headers["x-seen"]) == (201, b"body%d" % i, str(i))
    assert len(client._idle[("127.0.0.1", int(base.rsplit(":", 1)[1]))]) == 1  # one reused conn
    await client.close()


async def test_idle_connection_closed_by_server_is_replaced(
    server: str,
) -> None:
    base = server
    client = HttpClient(Fallback())
    assert (await client.send(f"{base}/echo", [("x-a", "1")], b"", 5.0)).status == 201
    await asyncio.sleep(1.0)  # past the server's keep-alive timeout: it closes the connection
    assert (await client.send(f"{base}/echo", [("x-a", "2")], b"", 5.0)).status == 201
    await client.close()


async def test_chunked_and_closing_responses(server: str) -> None:
    base = server
    client = HttpClient(Fallback())
    assert (await client.send(f"{base}/chunked", [], b"", 5.0)).body == b"abcdef"
    assert (await client.send(f"{base}/closing", [], b"", 5.0)).body == b"bye"
    assert (await client.send(f"{base}/echo", [("x-a", "z")], b"", 5.0)).status == 201
    await client.close()


async def test_timeout_refusal_and_cap(server: str) -> None:
    base = server
    client = HttpClient(Fallback())
    with pytest.raises(SendError, match="timed out"):
        await client.send(f"{base}/slow", [], b"", 0.2)
    with pytest.raises(SendError, match="connect"):
        await client.send("http://127.0.0.1:9/x", [], b"", 2.0)
    with pytest.raises(SendError, match="too large"):
        await client.send(f"{base}/huge", [], b"", 5.0)
    assert (await client.send(f"{base}/echo", [("x-a", "ok")], b"", 5.0)).status == 201
    await client.close()


async def test_timeout_on_a_pooled_connection_is_not_retried(server: str) -> None:
    client = HttpClient(Fallback())
    first = await client.send(f"{server}/echo", [("x-a", "y")], b"", 5.0)  # pools a connection
    assert first.status == 201
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(SendError, match=r"timed out after 0\.2 s$"):
        await client.send(f"{server}/slow", [], b"", 0.2)
    assert 0.2 <= loop.time() - t0 < 2.0  # one attempt (a retry would say "(connecting)")
    # The timed-out connection was closed, so its late response cannot answer this request.
    assert (await client.send(f"{server}/echo", [("x-a", "z")], b"", 5.0)).status == 201
    await client.close()


async def test_https_goes_to_the_fallback() -> None:
    fallback = Fallback()
    client = HttpClient(fallback)
    assert (await client.send("https://example.invalid/x", [], b"", 1.0)).status == 299
    assert fallback.urls == ["https://example.invalid/x"]
    await client.close()


async def test_headers_go_as_utf8_and_an_unencodable_one_is_a_send_error(server: str) -> None:
    base = server
    client = HttpClient(Fallback())
    resp = await client.send(f"{base}/echo", [("x-a", "€ü")], b"", 5.0)
    assert resp.raw_headers and dict(resp.raw_headers)[b"x-seen"] == "€ü".encode()
    with pytest.raises(SendError):
        await client.send(f"{base}/echo", [("x-a", "\ud800")], b"", 5.0)  # a lone surrogate
    await client.close()
