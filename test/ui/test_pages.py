"""Fragment tests of the console's pages with fake ports: status codes, what each page and
fragment says, and that writes go through validation and the read-only rule."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fixtures.console import FakeObjects, broker, console, trigger
from fixtures.subscriber import SinkServer
from kbroker.core.contract import Contract, DeliverySpec, FilterSpec, Trigger
from kbroker.ui import app, topology
from kbroker.ui.context import ConsoleContext
from starlette.applications import Starlette

FORM = {
    "broker": "default/default",
    "name": "new-one",
    "mode": "cesql",
    "cesql": "type = 'a'",
    "subscriber": "http://127.0.0.1:9/x",
    "inherit": "on",
}


def _ctx(**kw: object) -> ConsoleContext:
    objects = FakeObjects(
        [broker("default", "default"), trigger("default", "hand"), trigger("default", "mine")],
        read_only={("default", "hand"): "/config/hand.yaml"},
        **kw,  # type: ignore[arg-type]
    )
    return console(objects)


@contextlib.asynccontextmanager
async def _client(ctx: ConsoleContext) -> AsyncIterator[httpx.AsyncClient]:
    asgi = Starlette(routes=app.mount(ctx))
    transport = httpx.ASGITransport(asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        await c.get("/-/ui/")  # the CSRF cookie
        c.headers["X-CSRF-Token"] = c.cookies["kbroker-ui-csrf"]
        yield c


@pytest.mark.parametrize(
    "path",
    [
        "/-/ui/brokers/default/default",
        "/-/ui/brokers/default/default?tab=triggers",
        "/-/ui/brokers/default/default?tab=events",
        "/-/ui/brokers/default/default?tab=deadletters",
        "/-/ui/brokers/default/default?tab=tail",
        "/-/ui/brokers/default/default?tab=send",
        "/-/ui/triggers/default/mine",
        "/-/ui/triggers/default/mine/edit",
        "/-/ui/triggers/new?broker=default/default",
        "/-/ui/playground",
    ],
)
async def test_every_page_renders(path: str) -> None:
    async with _client(_ctx()) as c:
        r = await c.get(path)
    assert r.status_code == 200, r.text[-1500:]
    assert "<h1>" in r.text


async def test_unknown_objects_are_404() -> None:
    async with _client(_ctx()) as c:
        for path in ("/-/ui/brokers/default/nope", "/-/ui/triggers/default/nope"):
            assert (await c.get(path)).status_code == 404


async def test_the_preview_is_the_yaml_to_write_and_says_when_it_is_invalid() -> None:
    ctx = _ctx(errors=["spec.filters[0].cesql: bad"])
    async with _client(ctx) as c:
        r = await c.post("/-/ui/triggers/preview", data=FORM)
    assert r.status_code == 200
    assert "cesql: type = &#39;a&#39;" in r.text
    assert 'data-invalid="true"' in r.text
    assert "spec.filters[0].cesql: bad" in r.text
    assert 'hx-swap-oob="true"' in r.text  # the retry schedule follows the form


async def test_opening_the_create_page_shows_no_errors() -> None:
    async with _client(_ctx(errors=["metadata.name: required"])) as c:
        r = await c.get("/-/ui/triggers/new?broker=default/default")
    assert "metadata.name: required" not in r.text
    assert 'data-invalid="false"' in r.text


async def test_submit_validates_then_writes_and_goes_to_the_trigger() -> None:
    bad = _ctx(errors=["spec.subscriber: required"])
    async with _client(bad) as c:
        r = await c.post("/-/ui/triggers/new", data=FORM)
    assert r.status_code == 422
    assert "spec.subscriber: required" in r.text
    assert bad.objects.applied == []  # type: ignore[attr-defined]
    good = _ctx()
    async with _client(good) as c:
        r = await c.post("/-/ui/triggers/new", data=FORM)
    assert (r.status_code, r.headers["location"]) == (303, "/-/ui/triggers/default/new-one")
    [written] = good.objects.applied  # type: ignore[attr-defined]
    assert written["spec"]["filters"] == [{"cesql": "type = 'a'"}]


async def test_creating_over_an_existing_trigger_is_a_conflict() -> None:
    async with _client(_ctx()) as c:
        r = await c.post("/-/ui/triggers/new", data={**FORM, "name": "mine"})
    assert r.status_code == 409


async def test_hand_written_triggers_are_read_only() -> None:
    ctx = _ctx()
    async with _client(ctx) as c:
        page = await c.get("/-/ui/triggers/default/hand/edit")
        assert "Read-only" in page.text and "/config/hand.yaml" in page.text
        assert "Save changes" not in page.text
        r = await c.post("/-/ui/triggers/default/hand/edit", data=FORM)
    assert r.status_code == 403
    assert ctx.objects.applied == []  # type: ignore[attr-defined]


async def test_editing_shows_a_diff() -> None:
    async with _client(_ctx()) as c:
        r = await c.post(
            "/-/ui/triggers/preview", data={**FORM, "editing": "default/mine", "name": "mine"}
        )
    assert '<span class="add">+  filters:</span>' in r.text


async def test_the_cesql_check_points_at_the_error() -> None:
    async with _client(_ctx()) as c:
        r = await c.post("/-/ui/triggers/cesql-check", data={"cesql": "type = = 'a'"})
        ok = await c.post("/-/ui/triggers/cesql-check", data={"cesql": "type = 'a' AND amount > 1"})
    assert 'data-line="1" data-col="8"' in r.text
    assert "Line 1, column 8" in r.text
    assert "Valid CESQL" in ok.text and "<code>amount</code>" in ok.text


async def test_send_shows_the_event_as_curl_and_publishes() -> None:
    ctx = _ctx()
    async with _client(ctx) as c:
        data = {"type": "t", "source": "s", "id": "1", "data": "{}"}
        preview = await c.post("/-/ui/brokers/default/default/send?preview=1", data=data)
        assert "ce-type: t" in preview.text and ctx.events.published == []  # type: ignore[attr-defined]
        await c.post("/-/ui/brokers/default/default/send", data=data)
    [sent] = ctx.events.published  # type: ignore[attr-defined]
    assert sent.attributes["id"] == "1"


def test_topology_labels_expressions_and_dashes_dead_letter_edges() -> None:
    t_cesql = Trigger(
        "default",
        "c",
        "u1",  # type: ignore[arg-type]
        "default",
        "http://127.0.0.1:9/a",
        filters=(FilterSpec("cesql", expression="amount > 1"),),
        delivery=DeliverySpec(dead_letter_uri="http://127.0.0.1:9/dls"),
    )
    t_types = Trigger(
        "default",
        "e",
        "u2",  # type: ignore[arg-type]
        "default",
        "http://127.0.0.1:9/b",
        filters=(FilterSpec("exact", attributes=(("type", "order.created"),)),),
    )
    g = topology.build(
        "default",
        "default",
        [trigger("default", "c"), trigger("default", "e"), trigger("default", "pending")],
        Contract(triggers=(t_cesql, t_types)),
        ["/shop"],
        {},
        "/-/ui",
    )
    assert g.nodes["t:c"].sub == "expression, see test"
    assert g.nodes["t:e"].sub == "type order.created"
    assert g.nodes["t:pending"].sub == "not in force"  # shown, never dropped
    assert [e.dashed for e in g.edges if e.b == "d:http://127.0.0.1:9/dls"] == [True]
    svg = topology.svg(g, "t")
    assert 'stroke-dasharray="6 4"' in svg and 'href="/-/ui/triggers/default/c"' in svg


async def test_cluster_mode_refuses_loopback_and_link_local_subscribers() -> None:
    from kbroker.ui.context import ConsoleSettings

    base = _ctx()
    for allowed, status in ((False, 422), (True, 303)):
        settings = ConsoleSettings(cluster=True, allow_private_uris=allowed)
        ctx = ConsoleContext(base.objects, base.events, base.deliveries, settings)
        async with _client(ctx) as c:
            for uri in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest"):
                r = await c.post("/-/ui/triggers/new", data={**FORM, "subscriber": uri})
                assert r.status_code == status, (uri, allowed)
                if status == 422:
                    assert "link-local" in r.text


async def test_delete_removes_console_triggers_only() -> None:
    deleted: list[tuple[str, str, str]] = []
    ctx = _ctx()

    async def record(kind: str, namespace: str, name: str) -> None:
        deleted.append((kind, namespace, name))

    ctx.objects.delete = record  # type: ignore[method-assign]
    async with _client(ctx) as c:
        assert (await c.post("/-/ui/triggers/default/hand/delete")).status_code == 403
        r = await c.post("/-/ui/triggers/default/mine/delete")
    assert r.status_code == 303
    assert r.headers["location"] == "/-/ui/brokers/default/default?tab=triggers"
    assert deleted == [("Trigger", "default", "mine")]


async def test_a_failing_port_is_a_503_page_not_a_crash() -> None:
    ctx = _ctx()

    async def broken(kind: str, namespace: str | None = None) -> list[object]:
        raise ConnectionError("API server unreachable")

    async with _client(ctx) as c:
        ctx.objects.list = broken  # type: ignore[method-assign,assignment]
        r = await c.get("/-/ui/brokers/default/default?tab=triggers")
    assert r.status_code == 503
    assert "API server unreachable" in r.text


async def test_cluster_mode_offers_the_namespaces_services_as_subscribers() -> None:
    from kbroker.ui.context import ConsoleSettings

    base = _ctx()
    base.objects.objects.append(  # type: ignore[attr-defined]
        {"kind": "Service", "metadata": {"namespace": "default", "name": "orders-api"}}
    )
    for cluster in (False, True):
        ctx = ConsoleContext(
            base.objects, base.events, base.deliveries, ConsoleSettings(cluster=cluster)
        )
        async with _client(ctx) as c:
            page = await c.get("/-/ui/triggers/new?broker=default/default")
        assert ('<option value="Service/orders-api">' in page.text) is cluster


async def test_republish_needs_a_selection_and_a_target() -> None:
    async with _client(_ctx()) as c:
        r = await c.post("/-/ui/brokers/default/default/deadletters/republish", data={"to": ""})
    assert r.status_code == 200
    assert "select the dead letters to republish" in r.text


async def test_the_inspector_explains_each_trigger_and_offers_curl() -> None:
    from fixtures.console import FakeEvents
    from kbroker.core.channel import Envelope
    from kbroker.core.events import CloudEvent

    event = CloudEvent(
        {"specversion": "1.0", "id": "e1", "type": "order.paid", "source": "/shop"}, b"{}"
    )
    t = Trigger(
        "default",
        "orders",
        "u1",  # type: ignore[arg-type]
        "default",
        "http://127.0.0.1:9/a",
        filters=(FilterSpec("exact", attributes=(("type", "order.created"),)),),
    )
    base = _ctx(current=Contract(triggers=(t,)))
    ctx = ConsoleContext(
        base.objects, FakeEvents([Envelope(event, 1.0)]), base.deliveries, base.settings
    )
    async with _client(ctx) as c:
        r = await c.get("/-/ui/events/default/default/e1")
        missing = await c.get("/-/ui/events/default/default/nope")
    assert r.status_code == 200
    assert "does not match" in r.text
    assert "order.created" in r.text and "order.paid" in r.text  # the failing attribute, named
    assert "curl -i -X POST http://127.0.0.1:8080/default/default" in r.text
    assert "ce-type: order.paid" in r.text
    assert missing.status_code == 200  # the dispatcher's records are still shown
    assert "not among the broker" in missing.text


async def test_send_a_test_event_to_the_subscriber(sinks: SinkServer) -> None:
    sink = sinks.sink("probe")
    async with _client(_ctx()) as c:
        r = await c.post("/-/ui/triggers/subscriber-test", data={**FORM, "subscriber": sink.url})
        bad = await c.post("/-/ui/triggers/subscriber-test", data={**FORM, "subscriber": "x"})
    assert f"{sink.url} answered 202" in r.text or f"{sink.url} answered 200" in r.text
    [got] = await sink.wait_for(1)
    assert got.type == "dev.kbroker.console.test"
    assert "give an http(s) URI" in bad.text
