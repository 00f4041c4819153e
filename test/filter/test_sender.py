"""Both delivery senders against one real server, plain http through the raw client and https
through aiohttp: a subscriber must see the same delivery semantics whichever scheme it uses, so
each case runs against both (redirects are not followed, an over-long reply fails the attempt)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from fixtures.certs import ServerCerts
from kbroker.filter import httpclient
from kbroker.filter.httpclient import HttpClient
from kbroker.filter.sender import AiohttpSender, Sender, SendError


@dataclass
class Target:
    base: str
    sender: Sender


async def _redirect(request: web.Request) -> web.StreamResponse:
    return web.Response(status=302, headers={"location": "/ok"})


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(status=200, body=b"followed")


async def _huge(request: web.Request) -> web.StreamResponse:
    return web.Response(status=200, body=b"x" * (httpclient.MAX_RESPONSE_BYTES + 10))


async def _exact(request: web.Request) -> web.StreamResponse:
    return web.Response(status=200, body=b"x" * httpclient.MAX_RESPONSE_BYTES)


@pytest.fixture(params=["http-raw", "https-aiohttp"])
async def target(
    request: pytest.FixtureRequest, server_certs: ServerCerts
) -> AsyncIterator[Target]:
    app = web.Application()
    for path, handler in (("/redirect", _redirect), ("/ok", _ok), ("/huge", _huge)):
        app.router.add_post(path, handler)
    app.router.add_post("/exact", _exact)
    tls = request.param == "https-aiohttp"
    server_ctx = None
    if tls:
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(server_certs.cert, server_certs.key)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    client_ctx = ssl.create_default_context(cafile=str(server_certs.ca.path))
    sender = HttpClient(AiohttpSender(ssl_context=client_ctx))
    yield Target(f"{'https' if tls else 'http'}://127.0.0.1:{port}", sender)
    await sender.close()
    await runner.cleanup()


async def test_a_redirect_is_returned_not_followed(target: Target) -> None:
    resp = await target.sender.send(f"{target.base}/redirect", [], b"", 5.0)
    assert resp.status == 302  # a failed attempt for the dispatcher, as Knative treats it
    assert resp.body != b"followed"


async def test_an_over_long_reply_fails_the_attempt(target: Target) -> None:
    with pytest.raises(SendError, match="too large"):
        await target.sender.send(f"{target.base}/huge", [], b"", 5.0)


async def test_a_reply_at_the_cap_is_kept_whole(target: Target) -> None:
    resp = await target.sender.send(f"{target.base}/exact", [], b"", 5.0)
    assert (resp.status, len(resp.body)) == (200, httpclient.MAX_RESPONSE_BYTES)
