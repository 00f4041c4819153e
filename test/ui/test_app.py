"""The console app: where it is served, and that it never takes a Broker's ingress path."""

from __future__ import annotations

import httpx
from fixtures.console import FakeObjects, broker, console, trigger
from kbroker.ui import app
from starlette.applications import Starlette


def _client(objects: FakeObjects) -> httpx.AsyncClient:
    asgi = Starlette(routes=app.mount(console(objects)))
    return httpx.AsyncClient(transport=httpx.ASGITransport(asgi), base_url="http://127.0.0.1")


async def test_the_overview_lists_problem_brokers_first() -> None:
    objects = FakeObjects(
        [
            broker("default", "calm"),
            broker("default", "orders"),
            broker("team", "broken", "False"),
            trigger("default", "no-dls", "orders"),
            trigger(
                "default",
                "safe",
                "calm",
                delivery={"deadLetterSink": {"uri": "http://127.0.0.1:9/dls"}},
            ),
        ]
    )
    async with _client(objects) as c:
        r = await c.get("/-/ui/")
    assert r.status_code == 200
    broken, orders, calm = (
        r.text.index(f"/-/ui/brokers/{k}")
        for k in ("team/broken", "default/orders", "default/calm")
    )
    assert broken < orders < calm
    assert "without a dead-letter sink: no-dls" in r.text
    assert "StorageNotReady" in r.text


async def test_the_slashless_prefix_redirects_and_static_files_are_served() -> None:
    async with _client(FakeObjects()) as c:
        r = await c.get("/-/ui")
        assert (r.status_code, r.headers["location"]) == (308, "/-/ui/")
        assert (await c.get("/-/ui/static/vendor/htmx.min.js")).status_code == 200
        assert (await c.get("/-/ui/static/console.css")).status_code == 200
        missing = await c.get("/-/ui/no/such/page", headers={"accept": "text/html"})
        assert missing.status_code == 404
        assert "Back to the overview" in missing.text
