"""The Deliveries port: in-process redrive through the real dispatcher to a real subscriber,
and cluster mode's records served by each filter process and merged."""

from __future__ import annotations

import httpx
import pytest
from fixtures.subscriber import SinkServer
from kbroker.core import events
from kbroker.core.contract import Broker, Contract, DeliverySpec, Trigger, TriggerUid
from kbroker.core.contract_source import ContractHolder
from kbroker.core.outcomes import Verdict
from kbroker.filter.dispatch import Dispatcher
from kbroker.filter.httpclient import HttpClient
from kbroker.filter.sender import AiohttpSender
from starlette.applications import Starlette

from kbroker import ui_deliveries


def event(event_id: str) -> events.CloudEvent:
    attrs: dict[str, events.AttrValue] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/s",
        "type": "t",
    }
    return events.CloudEvent(attrs, b"{}")


def setup(url: str, broker_url: str) -> tuple[ContractHolder, Dispatcher]:
    b = Broker("ns", "b", "ub", broker_url)
    t = Trigger("ns", "t", TriggerUid("u"), "b", url, delivery=DeliverySpec(retry=1))
    return ContractHolder(Contract(brokers=(b,), triggers=(t,))), Dispatcher(
        HttpClient(AiohttpSender())
    )


async def test_redrive_goes_to_the_subscriber_only_and_is_recorded(sinks: SinkServer) -> None:
    sink = sinks.sink("s", fail_first=1)
    broker = sinks.sink("broker")
    holder, dispatcher = setup(sink.url, broker.url)
    port = ui_deliveries.InProcessDeliveries(holder, dispatcher)
    try:
        (outcome,) = await port.redrive("ns", "t", [event("x1")])
        with pytest.raises(ui_deliveries.UnknownTrigger):
            await port.redrive("ns", "nope", [event("x2")])
    finally:
        await dispatcher.sender.close()
    assert (outcome.event_id, outcome.verdict) == ("x1", Verdict.DELIVERED)
    assert [a.status for a in outcome.attempts] == [500, 200]  # with the Trigger's retries
    assert sink.ids() == ["x1", "x1"] and broker.received == []
    records = port.records("ns", "t")
    assert records is not None and records.recent[-1] == outcome
    assert set(port.all_records()) == {("ns", "t")}


async def test_records_from_each_filter_process_merge(sinks: SinkServer) -> None:
    sink = sinks.sink("s")
    apps = []
    for n in range(2):
        holder, dispatcher = setup(sink.url, sinks.base + "/broker")
        t = holder.current.triggers[0]
        try:
            for i in range(n + 1):
                await dispatcher.dispatch(event(f"p{n}-{i}"), t, holder.current.brokers[0])
        finally:
            await dispatcher.sender.close()
        apps.append(Starlette(routes=[ui_deliveries.records_route(dispatcher, holder)]))

    class Route(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            n = int(request.url.host.removeprefix("filter-"))
            if n >= len(apps):
                raise httpx.ConnectError("connection refused", request=request)
            app = apps[n]
            inner = httpx.ASGITransport(app)
            return await inner.handle_async_request(request)

    port = ui_deliveries.HttpDeliveries(
        ["http://filter-0:9090", "http://filter-1:9090", "http://filter-9:9090"], transport=Route()
    )
    await port.refresh()
    got = port.records("ns", "t")
    assert got is not None
    assert got.windows["1m"].delivered == 3
    assert sorted(o.event_id for o in got.recent) == ["p0-0", "p1-0", "p1-1"]
    assert list(port.errors) == ["http://filter-9:9090"]  # the one that failed is named


def test_parse_records_refuses_other_documents() -> None:
    with pytest.raises(ValueError):
        ui_deliveries.parse_records(b'{"nope": 1}')
    with pytest.raises(ValueError):
        ui_deliveries.parse_records(b"<html>")
