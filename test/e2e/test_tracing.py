"""Traces across every hop: the exact span tree of a reply chain, dead-lettering, and OTLP export.

    test span --POST--> ingress [broker:default.default]
                 == channel (embedded log | Kafka topic): Envelope.traceparent ==
               trigger:first --send--> sink "first" --reply--> ingress [broker:...]
                                                     == channel ==
                                                   trigger:second --send--> sink "second"

The in-process tests build `Standalone` (kbroker/standalone.py) inside the test with a
TracerProvider whose exporter is in memory, so the whole tree (and the parent links across the
channel) is asserted exactly; subscribers are real aiohttp servers that record the `traceparent`
they were sent. The last test runs the real `kbroker run` process with OTEL_* variables and
receives its spans over OTLP/HTTP (test/fixtures/otlp.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import knative_yaml as ky
from fixtures.broker import StartBroker, make_event
from fixtures.otlp import OtlpReceiver
from fixtures.subscriber import Received, Sink, SinkServer
from kbroker.core import events, telemetry
from kbroker.core.settings import EmbeddedSettings, RunSettings
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kbroker import standalone

FAST = {"backoffPolicy": "linear", "backoffDelay": "PT0.01S"}


@dataclass
class InProcess:
    app: standalone.Standalone
    base: str
    client: httpx.AsyncClient
    exporter: InMemorySpanExporter
    tracer: trace.Tracer  # the "producer" side, same provider

    def url(self) -> str:
        return f"{self.base}/default/default"

    async def post(self, event: events.CloudEvent, headers: dict[str, str]) -> int:
        hdrs, body = events.encode_binary(event)
        resp = await self.client.post(self.url(), content=body, headers=[*hdrs, *headers.items()])
        return resp.status_code

    async def spans_named(self, name: str, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(s.name == name for s in self.exporter.get_finished_spans()) >= count:
                return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no finished span {name!r}: {self.names()}")

    def names(self) -> list[str]:
        return [s.name for s in self.exporter.get_finished_spans()]


Run = Callable[[str], Awaitable[InProcess]]


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
async def in_process(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Run]:
    bootstrap = None
    if request.param == "kafka":
        try:
            bootstrap = request.getfixturevalue("kafka_bootstrap")
        except Exception as exc:  # no Java or no jars on this machine
            pytest.skip(f"kafka_bootstrap unavailable: {exc}")
    started: list[tuple[standalone.Standalone, asyncio.Task[None], httpx.AsyncClient]] = []

    async def run(objects_yaml: str) -> InProcess:
        config = tmp_path / "config"
        config.mkdir()
        (config / "objects.yaml").write_text(objects_yaml)
        settings = RunSettings(
            config_dir=config,
            port=0,
            data_dir=tmp_path / "data",
            kafka_bootstrap=bootstrap,
            poll_interval=0.05,
            embedded=EmbeddedSettings(data_dir=tmp_path / "data"),
        )
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        app = standalone.Standalone(
            settings, standalone.bind("127.0.0.1", 0), telemetry.Tracing(provider)
        )
        task = asyncio.create_task(app.serve())
        client = httpx.AsyncClient(timeout=10.0)
        started.append((app, task, client))
        deadline = time.monotonic() + 60
        while not await _all_ready(client, app.base_url):
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError("in-process broker never became ready")
            await asyncio.sleep(0.05)
        return InProcess(app, app.base_url, client, exporter, provider.get_tracer("test"))

    try:
        yield run
    finally:
        for app, task, client in started:
            app.stopping.set()
            await asyncio.wait_for(task, 30)
            await client.aclose()


async def _all_ready(client: httpx.AsyncClient, base: str) -> bool:
    try:
        if (await client.get(f"{base}/readyz")).status_code != 200:
            return False
        status = (await client.get(f"{base}/status")).json()
    except httpx.HTTPError:
        return False
    objects = status["brokers"] + status["triggers"]
    return bool(objects) and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in o["status"]["conditions"])
        for o in objects
    )


def tree(spans: tuple[ReadableSpan, ...], root: ReadableSpan) -> tuple[Any, ...]:
    """(name, kind, children...) below `root`, children in start order."""
    rid = root.context.span_id
    children = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == rid),
        key=lambda s: s.start_time or 0,
    )
    return (root.name, root.kind.name, *(tree(spans, c) for c in children))


def only(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def traceparent_of(span: ReadableSpan) -> str:
    return telemetry.format_traceparent(span.context)


async def test_reply_chain_is_one_trace(in_process: Run, sinks: SinkServer) -> None:
    def answer(ev: events.CloudEvent) -> events.CloudEvent:
        return make_event("reply-1", type="com.example.second", source="/first")

    first = sinks.sink("first", reply=answer)
    second = sinks.sink("second")
    b = await in_process(
        ky.dump(
            ky.broker(),
            ky.trigger("first", first.url, attributes={"type": "com.example.first"}),
            ky.trigger("second", second.url, attributes={"type": "com.example.second"}),
        )
    )
    with b.tracer.start_as_current_span("producer", kind=trace.SpanKind.PRODUCER) as producer:
        tp = telemetry.format_traceparent(producer.get_span_context())
        assert await b.post(make_event("e-1", type="com.example.first"), {"traceparent": tp}) == 202
    await second.wait_for(1)
    await b.spans_named("trigger:second.default")
    spans = b.exporter.get_finished_spans()
    (root,) = only(spans, "producer")
    reply_name = next(s.name for s in spans if s.name.startswith("reply "))
    assert reply_name == f"reply {b.url()}"
    assert tree(spans, root) == (
        "producer",
        "PRODUCER",
        (
            "broker:default.default",
            "SERVER",
            (
                "trigger:first.default",
                "CONSUMER",
                (
                    f"send {first.url}",
                    "CLIENT",
                    (
                        reply_name,
                        "CLIENT",
                        (
                            "broker:default.default",
                            "SERVER",
                            (
                                "trigger:second.default",
                                "CONSUMER",
                                (f"send {second.url}", "CLIENT"),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert len(spans) == 8
    # Each subscriber got the context of the attempt span that called it.
    (send1,) = only(spans, f"send {first.url}")
    (send2,) = only(spans, f"send {second.url}")
    assert first.received[0].headers["traceparent"] == traceparent_of(send1)
    assert second.received[0].headers["traceparent"] == traceparent_of(send2)
    # Messaging semantic conventions and our attributes.
    ingress1, ingress2 = sorted(
        only(spans, "broker:default.default"), key=lambda s: s.start_time or 0
    )
    assert dict(ingress1.attributes or {}) == {
        "messaging.system": "knative",
        "messaging.destination.name": "default/default",
        "messaging.operation.name": "send",
        "messaging.message.id": "e-1",
        "cloudevents.event_type": "com.example.first",
        "cloudevents.event_source": "/test",
        "http.response.status_code": 202,
    }
    assert (ingress2.attributes or {})["messaging.message.id"] == "reply-1"
    (t2,) = only(spans, "trigger:second.default")
    assert dict(t2.attributes or {}) == {
        "messaging.system": "knative",
        "messaging.destination.name": "default/default",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": "default/second",
        "messaging.message.id": "reply-1",
        "cloudevents.event_type": "com.example.second",
        "kbroker.delivery.outcome": "delivered",
    }
    assert dict(send2.attributes or {}) == {
        "url.full": second.url,
        "kbroker.delivery.attempt": 1,
        "http.response.status_code": 200,
    }
    assert t2.kind is trace.SpanKind.CONSUMER


async def test_retries_and_dead_letter_are_spans(in_process: Run, sinks: SinkServer) -> None:
    failing = sinks.sink("failing", status=500)
    dls = sinks.sink("dls")
    b = await in_process(
        ky.dump(ky.broker(), ky.trigger("t", failing.url, delivery=ky.dls(dls.url, 1, **FAST)))
    )
    assert await b.post(make_event("e-2"), {}) == 202
    await dls.wait_for(1)
    await b.spans_named("trigger:t.default")
    spans = b.exporter.get_finished_spans()
    (root,) = only(spans, "broker:default.default")
    assert root.parent is None  # no producer context: a new trace starts at ingress
    assert tree(spans, root) == (
        "broker:default.default",
        "SERVER",
        (
            "trigger:t.default",
            "CONSUMER",
            (f"send {failing.url}", "CLIENT"),
            (f"send {failing.url}", "CLIENT"),
            (f"dead-letter {dls.url}", "CLIENT"),
        ),
    )
    attempts = only(spans, f"send {failing.url}")
    assert [(s.attributes or {})["kbroker.delivery.attempt"] for s in attempts] == [1, 2]
    assert all((s.attributes or {})["http.response.status_code"] == 500 for s in attempts)
    assert all(s.status.status_code is trace.StatusCode.ERROR for s in attempts)
    (dl,) = only(spans, f"dead-letter {dls.url}")
    assert (dl.attributes or {})["http.response.status_code"] == 200
    assert dls.received[0].headers["traceparent"] == traceparent_of(dl)
    (t,) = only(spans, "trigger:t.default")
    assert (t.attributes or {})["kbroker.delivery.outcome"] == "dead_lettered"
    assert t.status.status_code is trace.StatusCode.ERROR


async def test_cloudevents_tracing_extension_is_joined(in_process: Run, sinks: SinkServer) -> None:
    sink = sinks.sink("s")
    # Trigger names differ per test: on Kafka, a consumer group outlives the test's broker.
    b = await in_process(ky.dump(ky.broker(), ky.trigger("ext", sink.url)))
    origin = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = make_event("e-3", traceparent=origin, tracestate="vendor=1")
    assert await b.post(event, {}) == 202
    await b.spans_named("trigger:ext.default")
    (ingress,) = only(b.exporter.get_finished_spans(), "broker:default.default")
    assert ingress.parent is not None
    assert f"{ingress.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{ingress.parent.span_id:016x}" == "b7ad6b7169203331"
    assert ingress.context.trace_state.get("vendor") == "1"
    # The extension itself is event data: delivered unchanged.
    assert sink.events[0].attributes["traceparent"] == origin


async def test_otlp_export_from_kbroker_run(
    start_broker: StartBroker, sinks: SinkServer, otlp_receiver: OtlpReceiver
) -> None:
    sink = sinks.sink("s")
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "kbroker-e2e",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",  # roots never sampled: only the producer's choice counts
    }
    proc = await start_broker({"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url))}, env=env)
    await proc.wait_ready_object("Trigger", "t")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    sampled = f"00-{trace_id}-00f067aa0ba902b7-01"
    unsampled = "00-11112222333344445555666677778888-00f067aa0ba902b7-00"
    assert (await proc.send(make_event("u"), headers={"traceparent": unsampled})).status_code == 202
    assert (await proc.send(make_event("s"), headers={"traceparent": sampled})).status_code == 202
    await sink.wait_for(2)
    spans = await otlp_receiver.wait_for(3)
    await asyncio.sleep(0.3)  # nothing more may come: the unsampled event's spans are not exported
    spans = otlp_receiver.spans
    assert sorted(s.name for s in spans) == [
        "broker:default.default",
        f"send {sink.url}",
        "trigger:t.default",
    ]
    by_name = {s.name: s for s in spans}
    ingress, trig, send = (
        by_name["broker:default.default"],
        by_name["trigger:t.default"],
        by_name[f"send {sink.url}"],
    )
    assert {s.trace_id for s in spans} == {trace_id}
    assert ingress.parent_span_id == "00f067aa0ba902b7"
    assert trig.parent_span_id == ingress.span_id
    assert send.parent_span_id == trig.span_id
    assert (ingress.kind, trig.kind, send.kind) == ("SERVER", "CONSUMER", "CLIENT")
    assert ingress.resource["service.name"] == "kbroker-e2e"
    assert trig.attributes["messaging.message.id"] == "s"
    assert send.attributes["http.response.status_code"] == 200
    # Both subscribers' requests carried a context; the unsampled one says so in its flags.
    received = {r.event.id: r.headers["traceparent"] for r in sink.received if r.event}
    assert received["s"] == f"00-{trace_id}-{send.span_id}-01"
    assert received["u"].startswith("00-11112222333344445555666677778888-")
    assert received["u"].endswith("-00")


async def test_tracing_off_passes_context_through(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    """No OTEL_* variables: no spans, yet the producer's context reaches the subscriber as sent."""
    sink = sinks.sink("s")
    proc = await start_broker({"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url))})
    await proc.wait_ready_object("Trigger", "t")
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {"traceparent": tp, "tracestate": "congo=t61rcWkgMzE"}
    assert (await proc.send(make_event("p"), headers=headers)).status_code == 202
    (received,) = [r.headers for r in (await _received(sink, 1))]
    assert received["traceparent"] == tp
    assert received["tracestate"] == "congo=t61rcWkgMzE"


async def _received(sink: Sink, count: int) -> list[Received]:
    await sink.wait_for(count)
    return sink.received
