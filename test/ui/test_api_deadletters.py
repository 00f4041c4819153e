"""ui/api_deadletters over fake ports: shapes, status codes, and the console's CSRF guard."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fixtures.deadletter_fakes import context
from kbroker.ui import api_deadletters, security
from starlette.applications import Starlette


def client(**settings: Any) -> tuple[httpx.AsyncClient, Any, Any]:
    ctx, events, deliveries = context(**settings)
    app = security.Guard(Starlette(routes=api_deadletters.routes(ctx)), token=ctx.settings.token)
    transport = httpx.ASGITransport(app)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1"), events, deliveries


async def post(c: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Any:
    await c.get("/api/records")  # the console hands out its CSRF cookie on any read
    csrf = c.cookies.get(security.CSRF_COOKIE) or ""
    return await c.post(url, json=body, headers={"x-csrf-token": csrf})


async def test_list() -> None:
    c, _, _ = client()
    got = (await c.get("/api/deadletters/ns/dlq?trigger=pay")).json()
    assert got["triggers"] == ["ns/pay", "ns/ship"]
    first = got["letters"][0]
    assert (first["id"], first["code"], first["data"], first["attempts"]) == ("a", 500, "boom", 3)
    assert first["event"]["attributes"]["knativeerrordest"] == "http://127.0.0.1:9001/pay"
    assert first["event"]["data"]["kind"] == "json"


async def test_payloads_can_be_hidden() -> None:
    c, _, _ = client(show_payloads=False)
    got = (await c.get("/api/deadletters/ns/dlq")).json()
    assert got["letters"][0]["event"]["data"] == {"size": 8, "hidden": True}


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/deadletters/ns/nope", 404),
        ("/api/deadletters/ns/dlq?trigger=nope", 404),
        ("/api/deadletters/ns/dlq?since=yesterday", 400),
        ("/api/deadletters/ns/dlq?limit=0", 400),
        ("/api/triggers/ns/nope/records", 404),
    ],
)
async def test_bad_reads(url: str, status: int) -> None:
    c, _, _ = client()
    r = await c.get(url)
    assert r.status_code == status and r.json()["error"]


async def test_redrive_needs_csrf() -> None:
    c, _, deliveries = client()
    r = await c.post("/api/deadletters/ns/dlq/redrive", json={"trigger": "pay", "ids": ["a"]})
    assert r.status_code == 403
    assert deliveries.sent == []


async def test_redrive() -> None:
    c, _, deliveries = client()
    r = await post(c, "/api/deadletters/ns/dlq/redrive", {"trigger": "pay", "ids": ["a", "x"]})
    assert r.status_code == 200, r.text
    got = r.json()
    assert [o["id"] for o in got["outcomes"]] == ["a"]
    assert got["outcomes"][0]["verdict"] == "delivered"
    assert got["missing"] == ["x"]
    assert [e.id for _, _, e in deliveries.sent] == ["a"]


@pytest.mark.parametrize(
    "body",
    [
        {"ids": ["a"]},
        {"trigger": "pay"},
        {"trigger": "pay", "ids": []},
        {"trigger": "pay", "ids": ["a"], "all": True},
        {"trigger": "pay", "all": True, "rate": "fast"},
        {"trigger": "pay", "all": True, "rate": 0},
        {"trigger": "pay", "all": True, "max": 100000},
    ],
)
async def test_bad_redrive_requests(body: dict[str, Any]) -> None:
    c, _, deliveries = client()
    r = await post(c, "/api/deadletters/ns/dlq/redrive", body)
    assert r.status_code == 400, r.text
    assert deliveries.sent == []


async def test_not_json_is_400() -> None:
    c, _, _ = client()
    await c.get("/api/records")
    csrf = c.cookies.get(security.CSRF_COOKIE) or ""
    r = await c.post(
        "/api/deadletters/ns/dlq/redrive", content=b"{", headers={"x-csrf-token": csrf}
    )
    assert r.status_code == 400


async def test_republish_asks_for_confirmation_first() -> None:
    c, events, _ = client()
    r = await post(c, "/api/deadletters/ns/dlq/republish", {"to": "orders", "ids": ["b"]})
    assert r.status_code == 409 and "every Trigger" in r.json()["warning"]
    assert events.published == []
    r = await post(
        c, "/api/deadletters/ns/dlq/republish", {"to": "orders", "ids": ["b"], "confirm": True}
    )
    assert r.status_code == 200 and r.json()["published"] == 1
    assert [e.id for e in events.published] == ["b"]


async def test_trigger_records_say_what_the_sink_is() -> None:
    c, _, _ = client()
    pay = (await c.get("/api/triggers/ns/pay/records")).json()
    assert pay["deadLetterSink"] == {"kind": "broker", "broker": "ns/dlq"}
    assert pay["records"]["lastFailure"]["id"] == "a"
    audit = (await c.get("/api/triggers/ns/audit/records")).json()
    assert audit["records"] is None
    assert audit["deadLetterSink"]["kind"] == "uri"
    assert "cannot be read back" in audit["deadLetterSink"]["note"]


async def test_all_records() -> None:
    c, _, _ = client()
    got = (await c.get("/api/records")).json()
    assert [(t["namespace"], t["trigger"]) for t in got["triggers"]] == [("ns", "pay")]
    assert got["triggers"][0]["stats"]["lastFailure"]["attempts"] == 3


async def test_token_is_required_when_set() -> None:
    c, _, _ = client(token="s3cret")
    assert (await c.get("/api/deadletters/ns/dlq")).status_code == 401
    ok = await c.get("/api/deadletters/ns/dlq", headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200
