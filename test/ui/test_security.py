"""The console's guard: CSRF on every write, the token when set, loopback Host without one."""

from __future__ import annotations

import httpx
from fixtures.console import FakeObjects, broker, console
from kbroker.ui import security
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route


async def _echo(request: Request) -> Response:
    form = await request.form()
    return PlainTextResponse(f"ok {form.get('x', '')}")


def _client(token: str = "", host: str = "127.0.0.1") -> httpx.AsyncClient:
    inner = Starlette(routes=[Route("/write", _echo, methods=["GET", "POST"])])
    app = Starlette(routes=[Mount("/-/ui", app=security.Guard(inner, token=token))])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"http://{host}")


async def test_a_write_without_the_csrf_token_is_refused() -> None:
    async with _client() as c:
        assert (await c.post("/-/ui/write", data={"x": "1"})).status_code == 403
        await c.get("/-/ui/write")  # sets the cookie; still no token echoed
        assert (await c.post("/-/ui/write", data={"x": "1"})).status_code == 403
        assert (
            await c.post("/-/ui/write", data={"x": "1"}, headers={"X-CSRF-Token": "guess"})
        ).status_code == 403


async def test_a_write_echoing_the_cookie_passes_as_header_or_form_field() -> None:
    async with _client() as c:
        first = await c.get("/-/ui/write")
        assert "SameSite=Strict" in first.headers["set-cookie"]
        assert "Path=/-/ui" in first.headers["set-cookie"]
        csrf = c.cookies[security.CSRF_COOKIE]
        r = await c.post("/-/ui/write", data={"x": "1"}, headers={"X-CSRF-Token": csrf})
        assert (r.status_code, r.text) == (200, "ok 1")
        # The form field is read by the guard and the body still reaches the route whole.
        r = await c.post("/-/ui/write", data={"x": "2", "csrf_token": csrf})
        assert (r.status_code, r.text) == (200, "ok 2")


async def test_a_cross_origin_write_is_refused_even_with_the_token() -> None:
    async with _client() as c:
        await c.get("/-/ui/write")
        csrf = c.cookies[security.CSRF_COOKIE]
        r = await c.post(
            "/-/ui/write",
            headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
        )
        assert r.status_code == 403


async def test_without_a_token_only_a_loopback_host_header_is_served() -> None:
    for host, status in (("127.0.0.1", 200), ("localhost:8080", 200), ("evil.example", 403)):
        async with _client(host=host) as c:
            assert (await c.get("/-/ui/write")).status_code == status, host


async def test_with_a_token_every_request_needs_it() -> None:
    async with _client(token="s3cret", host="console.example") as c:
        assert (await c.get("/-/ui/write")).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert (await c.get("/-/ui/write", headers=bad)).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert (await c.get("/-/ui/write", headers=good)).status_code == 200


async def test_login_sets_the_token_cookie_only_for_the_right_token() -> None:
    from kbroker.ui import app

    ctx = console(FakeObjects([broker("default", "default")]), token="s3cret")
    asgi = Starlette(routes=app.mount(ctx))
    transport = httpx.ASGITransport(asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5") as c:
        assert (await c.get("/-/ui/")).status_code == 401
        # Only the login page itself is open, not a broker that happens to be called "login".
        assert (await c.get("/-/ui/brokers/default/login")).status_code == 401
        assert (await c.get("/-/ui/static/console.css")).status_code == 200
        page = await c.get("/-/ui/login")
        assert page.status_code == 200
        assert "aria-label" in page.text or '<label for="token">' in page.text
        csrf = c.cookies[security.CSRF_COOKIE]
        wrong = await c.post("/-/ui/login", data={"token": "x", "csrf_token": csrf})
        assert wrong.status_code == 401
        right = await c.post("/-/ui/login", data={"token": "s3cret", "csrf_token": csrf})
        assert right.status_code == 303
        assert (await c.get("/-/ui/")).status_code == 200


def test_loopback_names() -> None:
    assert security.is_loopback("127.0.0.1")
    assert security.is_loopback("127.1.2.3")
    assert security.is_loopback("[::1]")
    assert security.is_loopback("localhost")
    assert not security.is_loopback("0.0.0.0")
    assert not security.is_loopback("10.0.0.1")
