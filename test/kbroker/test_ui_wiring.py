"""The console inside a real `kbroker run`: served under /-/ui/ without taking any Broker's
ingress path, guarded, and a Trigger created from the form becomes Ready and delivers."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from fixtures.broker import StartBroker, make_event
from fixtures.subscriber import SinkServer
from kbroker.core import events

from kbroker import ui_wiring

BROKER = """\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: default}
"""


async def test_console_lives_beside_the_ingress_and_creates_working_triggers(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    b = await start_broker({"broker.yaml": BROKER})
    await b.wait_ready_object("Broker", "default")
    sink = sinks.sink("made-in-console")
    async with httpx.AsyncClient(base_url=b.base, timeout=10) as c:
        page = await c.get("/-/ui/")
        assert page.status_code == 200
        assert "default/default" in page.text
        assert (await c.get("/-/ui")).status_code == 308  # not the ingress of namespace "-"
        assert (await c.post("/-/ui/triggers/new", data={"name": "x"})).status_code == 403
        csrf = c.cookies["kbroker-ui-csrf"]
        created = await c.post(
            "/-/ui/triggers/new",
            data={
                "csrf_token": csrf,
                "broker": "default/default",
                "name": "made-in-console",
                "mode": "filters",
                "row_dialect_0": "exact",
                "row_attr_0": "type",
                "row_value_0": "order.created",
                "subscriber": sink.url,
                "inherit": "on",
            },
        )
        assert created.status_code == 303, created.text[-2000:]
        assert created.headers["location"] == "/-/ui/triggers/default/made-in-console"
    assert (b.config_dir / "ui.default.made-in-console.trigger.yaml").exists()
    await b.wait_ready_object("Trigger", "made-in-console")
    headers, body = events.encode_binary(make_event("1", "order.created"))
    sent = await b.client.post(b.broker_url(), headers=headers, content=body)
    assert sent.status_code == 202
    await b.client.post(
        b.broker_url(), headers=events.encode_binary(make_event("2", "other"))[0], content=body
    )
    got = await sink.wait_for(1)
    assert [e.id for e in got] == ["1"]
    async with httpx.AsyncClient(base_url=b.base, timeout=10) as c:
        page = await c.get("/-/ui/triggers/default/made-in-console")
        assert page.status_code == 200
        assert re.search(r'data-testid="trigger-ready">Ready<', page.text)
        assert sink.url in page.text


def test_off_loopback_the_console_needs_a_token(tmp_path: Path) -> None:
    src: Any = SimpleNamespace(channels={}, holder=None, pool=SimpleNamespace(dispatcher=None))
    assert ui_wiring.console_routes(src, "0.0.0.0") == []
    assert ui_wiring.console_routes(src, "127.0.0.1") != []
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    routes = ui_wiring.console_routes(src, "0.0.0.0", token)
    assert routes != []
    guard = routes[-1].app  # type: ignore[attr-defined]
    assert guard.token == "s3cret"
