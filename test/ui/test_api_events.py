"""ui/api_events over fake ports (httpx's ASGI transport): status codes, shapes, the tail as
SSE and NDJSON, and the console's token and CSRF wrapper around the writes."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from fixtures.console_events_fakes import FakeEvents, ctx, ev
from kbroker.ui import api_events, security
from starlette.applications import Starlette

STORED = [ev(i, "a" if i % 2 else "b", subject="s") for i in range(6)]


def client(events: FakeEvents | None = None, **settings: Any) -> httpx.AsyncClient:
    context = ctx(events or FakeEvents(STORED), **settings)
    asgi = Starlette(routes=api_events.routes(context))
    return httpx.AsyncClient(transport=httpx.ASGITransport(asgi), base_url="http://127.0.0.1")


async def test_recent_events() -> None:
    got = (await client().get("/api/brokers/ns/b/events?limit=3")).json()
    assert got["history"] is True
    assert [e["id"] for e in got["events"]] == ["3", "4", "5"]
    assert got["events"][0]["attributes"]["subject"] == "s"


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/brokers/ns/nope/events", 404),
        ("/api/brokers/ns/b/events?limit=zero", 400),
        ("/api/brokers/ns/b/events?limit=0", 400),
        ("/api/triggers/ns/nope/test", 404),
        ("/api/brokers/ns/b/tail?filter=type%20%3D", 400),
        ("/api/brokers/ns/nope/tail", 404),
    ],
)
async def test_bad_reads(url: str, status: int) -> None:
    response = await client().get(url)
    assert response.status_code == status
    assert response.json()["error"]


async def test_trigger_test_by_name() -> None:
    got = (await client().get("/api/triggers/ns/only-a/test?last=4")).json()
    assert (got["matched"], got["total"], got["summary"]) == (2, 4, "matches 2 of 4")
    assert [r["matched"] for r in got["rows"]] == [False, True, False, True]
    assert got["rows"][0]["explain"]["detail"] == "type = 'b' expected 'a'"
    assert got["rows"][0]["others"] == ["everything", "only-b"]


async def test_filter_test_with_a_spec_and_a_pasted_event() -> None:
    body = {
        "namespace": "ns",
        "broker": "b",
        "spec": {"filters": [{"cesql": "subject = 'x'"}]},
        "event": {"specversion": "1.0", "id": "p", "source": "/s", "type": "a"},
    }
    got = (await client().post("/api/filter-test", json=body)).json()
    assert got["source"] == "pasted" and got["total"] == 1 and got["matched"] == 0
    tree = got["rows"][0]["explain"]
    assert tree["kind"] == "cesql" and tree["errors"][0].startswith("missingAttribute")


async def test_filter_test_with_a_binary_event() -> None:
    body = {
        "namespace": "ns",
        "trigger": "only-a",
        "binary": {
            "headers": "ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: a",
            "body": "hi",
        },
    }
    got = (await client().post("/api/filter-test", json=body)).json()
    assert got["matched"] == 1 and got["rows"][0]["data"]["text"] == "hi"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (b'{"namespace": "ns"}', 400),
        (b'{"namespace": "ns", "broker": "b", "spec": {"filters": [{"exact": 1}]}}', 400),
        (b'{"namespace": "ns", "broker": "b", "event": {"id": "x"}}', 400),
        (b'{"namespace": "ns", "trigger": "nope"}', 404),
        (b"{" + b" " * api_events.MAX_BODY + b"}", 413),
    ],
)
async def test_bad_filter_tests(body: bytes, status: int) -> None:
    response = await client().post("/api/filter-test", content=body)
    assert response.status_code == status, response.text


async def test_cesql_check() -> None:
    c = client()
    bad = (await c.post("/api/cesql/check", json={"expression": "type =\n= 'a'"})).json()
    assert not bad["valid"] and (bad["error"]["line"], bad["error"]["column"]) == (2, 1)
    good = (
        await c.post(
            "/api/cesql/check",
            json={"expression": "type = 'a' AND tyep = 'b'", "namespace": "ns", "broker": "b"},
        )
    ).json()
    assert good["valid"] and good["attributes"] == ["type", "tyep"]
    assert good["unseen"] == ["tyep"]


async def test_payloads_can_be_hidden() -> None:
    stored = [ev(1, datacontenttype="text/plain")]
    stored[0].data = b"secret"
    c = client(FakeEvents(stored), show_payloads=False)
    got = (await c.get("/api/brokers/ns/b/events")).json()
    assert got["events"][0]["data"] == {"size": 6, "hidden": True}


async def test_tail_as_sse() -> None:
    events = FakeEvents([], live=[ev(1, "a"), ev(2, "b")], finite=True)
    r = await client(events).get("/api/brokers/ns/b/tail?filter=type%20%3D%20'a'")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    text = r.text
    blocks = [b for b in text.split("\n\n") if b.startswith("event: event")]
    assert len(blocks) == 1
    item = orjson.loads(blocks[0].split("data: ", 1)[1])
    assert item["id"] == "1" and item["matchedBy"] == ["only-a", "everything"]
    assert 'event: dropped\ndata: {"dropped":0}' in text
    assert events.closed


async def test_tail_as_ndjson() -> None:
    events = FakeEvents([], live=[ev(1), ev(2), ev(3)], finite=True)
    r = await client(events).get("/api/brokers/ns/b/tail?format=ndjson")
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(x) for x in r.content.splitlines() if x.strip()]
    assert [x["id"] for x in lines] == ["1", "2", "3"]


async def test_writes_need_csrf_or_token_through_the_console_guard() -> None:
    context = ctx(FakeEvents(STORED), token="s3cret")
    app = security.Guard(Starlette(routes=api_events.routes(context)), token="s3cret")
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1")
    body = {"expression": "true"}
    assert (await c.post("/api/cesql/check", json=body)).status_code == 401
    auth = {"authorization": "Bearer s3cret"}
    first = await c.get("/api/brokers/ns/b/events", headers=auth)
    assert first.status_code == 200
    csrf = first.cookies[security.CSRF_COOKIE]
    ok = await c.post("/api/cesql/check", json=body, headers={**auth, "x-csrf-token": csrf})
    assert ok.status_code == 200 and ok.json()["valid"]


async def test_a_channel_outage_is_503_and_the_check_still_answers() -> None:
    events = FakeEvents(STORED)
    events.down = True
    c = client(events)
    assert (await c.get("/api/brokers/ns/b/events")).status_code == 503
    assert (await c.get("/api/triggers/ns/only-a/test")).status_code == 503
    body = {"expression": "type = 'a'", "namespace": "ns", "broker": "b"}
    check = await c.post("/api/cesql/check", json=body)
    assert check.status_code == 200 and check.json()["valid"]
