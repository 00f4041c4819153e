"""ingress/admin_proxy against a real HTTP server on a Unix socket (aiohttp), through ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from kbroker.ingress.admin_proxy import MAX_BODY, AdminProxy


@pytest.fixture
async def primary(tmp_path: Path) -> AsyncIterator[Path]:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "body": body.decode(),
                "x": request.headers.get("x-test"),
            },
            status=201,
            headers={"x-from": "primary"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    path = tmp_path / "admin.sock"
    await web.UnixSite(runner, str(path)).start()
    try:
        yield path
    finally:
        await runner.cleanup()


def client(proxy: AdminProxy) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy), base_url="http://t")


async def test_requests_and_answers_pass_through_unchanged(primary: Path) -> None:
    proxy = AdminProxy(primary)
    async with client(proxy) as c:
        resp = await c.post("/status/x?y=1", content=b"hello", headers={"x-test": "v"})
    await proxy.aclose()
    assert resp.status_code == 201
    assert resp.headers["x-from"] == "primary"
    assert resp.json() == {"method": "POST", "path": "/status/x?y=1", "body": "hello", "x": "v"}


async def test_an_oversized_body_is_refused_before_it_is_sent(primary: Path) -> None:
    proxy = AdminProxy(primary)
    async with client(proxy) as c:
        resp = await c.post("/x", content=b"a" * (MAX_BODY + 1))
    await proxy.aclose()
    assert resp.status_code == 413
    assert "over" in resp.text


async def test_no_primary_is_a_503_not_a_crash(tmp_path: Path) -> None:
    proxy = AdminProxy(tmp_path / "nobody.sock", timeout=2.0)
    async with client(proxy) as c:
        resp = await c.get("/status")
    await proxy.aclose()
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    assert "primary kbroker process did not answer" in resp.text
