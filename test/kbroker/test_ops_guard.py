"""OpsGuard: which paths need the token, which headers pass, and the token file's lifecycle."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kbroker import ops_guard

TOKEN = "tok-123"


async def _ok(_: Request) -> Response:
    return PlainTextResponse("ok")


APP = Starlette(
    routes=[
        Route(p, _ok, methods=["GET", "POST"])
        for p in ("/status", "/metrics", "/contract-generation", "/healthz", "/readyz", "/a/b")
    ]
    + [Route("/status/metrics", _ok, methods=["POST"])]
)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
async def client(token_file: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = ops_guard.guard(APP, token_file)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


@pytest.mark.parametrize(
    ("path", "authorization", "status"),
    [
        ("/status", None, 401),
        ("/metrics", None, 401),
        ("/contract-generation", None, 401),
        ("/metrics/", None, 401),
        ("/status", f"Bearer {TOKEN}", 200),
        ("/status", f"bearer {TOKEN}", 200),
        ("/metrics", f"Bearer {TOKEN}x", 401),
        ("/metrics", f"Basic {TOKEN}", 401),
        ("/metrics", TOKEN, 401),
        ("/metrics", "Bearer ", 401),
        ("/healthz", None, 200),
        ("/readyz", None, 200),
        ("/a/b", None, 200),  # not an operational endpoint
    ],
)
async def test_paths_and_headers(
    client: httpx.AsyncClient, path: str, authorization: str | None, status: int
) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    resp = await client.get(path, headers=headers)
    assert resp.status_code == status
    if status == 401:
        assert resp.headers["www-authenticate"] == "Bearer"


async def test_broker_named_like_an_endpoint_is_not_guarded(client: httpx.AsyncClient) -> None:
    assert (await client.post("/status/metrics")).status_code == 200


async def test_token_rotates_and_an_empty_file_admits_nobody(
    client: httpx.AsyncClient, token_file: Path
) -> None:
    token_file.write_text("new-token")
    os.utime(token_file, (1e9, 1e9))  # a distinct mtime even on coarse clocks
    assert (await client.get("/status", headers={"authorization": f"Bearer {TOKEN}"})).is_error
    ok = await client.get("/status", headers={"authorization": "Bearer new-token"})
    assert ok.status_code == 200
    token_file.write_text("")
    os.utime(token_file, (2e9, 2e9))
    assert (await client.get("/status", headers={"authorization": "Bearer "})).status_code == 401
    token_file.unlink()
    assert (await client.get("/status", headers={"authorization": "Bearer new-token"})).is_error


def test_no_token_file_leaves_the_app_untouched() -> None:
    assert ops_guard.guard(APP, None) is APP
