"""core/telemetry: OTEL_* settings, W3C trace context by hand, and the spans' parents/attributes.

The span tree across real hops is test/e2e/test_tracing.py's; here each piece is checked alone,
table-driven, with an in-memory exporter behind an injected provider.
"""

from __future__ import annotations

import pytest
from kbroker.core import contract, telemetry
from kbroker.core.events import CloudEvent
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TP, (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 1)),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", (None, None, 0)),
        ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", (None, None, 1)),
        (None, None),
        ("", None),
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", None),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", None),
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", None),
        ("00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01", None),
        ("00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01", None),
    ],
    ids=[
        "valid",
        "unsampled",
        "future-version",
        "absent",
        "empty",
        "version-ff",
        "v00-extra-field",
        "zero-trace",
        "zero-span",
        "not-hex",
        "misplaced-dash",
    ],
)
def test_parse_traceparent(value: str | None, expected: tuple[int | None, ...] | None) -> None:
    ctx = telemetry.parse_traceparent(value)
    if expected is None:
        assert ctx is None
        return
    assert ctx is not None and ctx.is_remote
    trace_id, span_id, flags = expected
    if trace_id is not None:
        assert (ctx.trace_id, ctx.span_id) == (trace_id, span_id)
    assert ctx.trace_flags == flags


def test_traceparent_round_trip_and_tracestate() -> None:
    ctx = telemetry.parse_traceparent(TP, "a=1,b=2")
    assert ctx is not None
    assert telemetry.format_traceparent(ctx) == TP
    assert ctx.trace_state.get("b") == "2"


def env_of(values: dict[str, str]) -> telemetry.TraceSettings:
    return telemetry.trace_settings(values.get)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, telemetry.TraceSettings()),
        ({"OTEL_TRACES_EXPORTER": "none"}, telemetry.TraceSettings()),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"},
            telemetry.TraceSettings(exporters=("otlp",), endpoint="http://c:4318/v1/traces"),
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp,console",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/custom",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            telemetry.TraceSettings(exporters=("otlp", "console"), endpoint="http://t:1/custom"),
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "console",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.1",
                "OTEL_SERVICE_NAME": "edge",
            },
            telemetry.TraceSettings(
                exporters=("console",),
                sampler="parentbased_traceidratio",
                ratio=0.1,
                service_name="edge",
            ),
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"},
            telemetry.TraceSettings(),
        ),
    ],
    ids=["default-off", "none", "otlp-base-endpoint", "traces-endpoint-wins", "ratio", "disabled"],
)
def test_trace_settings(env: dict[str, str], expected: telemetry.TraceSettings) -> None:
    assert env_of(env) == expected


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "jaeger"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_TRACES_SAMPLER": "sometimes"},
        {"OTEL_TRACES_SAMPLER_ARG": "half"},
    ],
    ids=["unknown-exporter", "grpc", "unknown-sampler", "bad-ratio"],
)
def test_trace_settings_refuse_what_cannot_be_honoured(env: dict[str, str]) -> None:
    with pytest.raises(telemetry.TelemetryConfigError):
        env_of(env)


def test_build_provider() -> None:
    assert telemetry.build_provider(telemetry.TraceSettings()) is None
    off = telemetry.TraceSettings(exporters=("console",), sampler="always_off")
    assert telemetry.build_provider(off) is None
    ts = telemetry.TraceSettings(
        exporters=("otlp",), sampler="parentbased_traceidratio", ratio=0.1, service_name="x"
    )
    provider = telemetry.build_provider(ts)
    assert provider is not None
    try:
        assert "TraceIdRatioBased{0.1}" in provider.sampler.get_description()
        assert provider.resource.attributes["service.name"] == "x"
    finally:
        provider.shutdown()


BROKER = contract.Broker("ns", "b", "uid", "http://127.0.0.1:1/ns/b")
TRIGGER = contract.Trigger("ns", "t", contract.TriggerUid("tuid"), "b", "http://sub/")


def event(id: str, **ext: str) -> CloudEvent:
    return CloudEvent({"specversion": "1.0", "id": id, "source": "/s", "type": "x.y", **ext}, b"")


@pytest.fixture
def traced() -> tuple[telemetry.Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return telemetry.Tracing(provider), exporter


def test_disabled_tracing_is_a_cached_false() -> None:
    assert telemetry.disabled().enabled is False


@pytest.mark.parametrize(
    ("header", "ext", "parent_span"),
    [
        (TP, {}, "b7ad6b7169203331"),
        (
            TP,
            {"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"},
            "b7ad6b7169203331",
        ),
        (None, {"traceparent": TP}, "b7ad6b7169203331"),
        ("garbage", {}, None),
        (None, {}, None),
    ],
    ids=["header", "header-wins-over-extension", "extension", "malformed", "none"],
)
def test_ingress_joins_the_producer(
    traced: tuple[telemetry.Tracing, InMemorySpanExporter],
    header: str | None,
    ext: dict[str, str],
    parent_span: str | None,
) -> None:
    tracing, exporter = traced
    span = tracing.ingress(BROKER, [event("1", **ext)], header, None)
    telemetry.end(span, 202)
    (done,) = exporter.get_finished_spans()
    assert done.name == "broker:b.ns"
    assert done.kind is trace.SpanKind.SERVER
    if parent_span is None:
        assert done.parent is None
    else:
        assert done.parent is not None and f"{done.parent.span_id:016x}" == parent_span
    assert done.status.status_code is trace.StatusCode.UNSET


def test_ingress_span_of_a_batch_counts_events(
    traced: tuple[telemetry.Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = traced
    span = tracing.ingress(BROKER, [event("1"), event("2")], None, None)
    telemetry.end(span, 503)
    (done,) = exporter.get_finished_spans()
    attrs = dict(done.attributes or {})
    assert attrs["messaging.batch.message_count"] == 2
    assert "messaging.message.id" not in attrs
    assert attrs["http.response.status_code"] == 503
    assert done.status.status_code is trace.StatusCode.ERROR


def test_hops_chain_and_carry_context(
    traced: tuple[telemetry.Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = traced
    ingress = tracing.ingress(BROKER, [event("1")], None, None)
    tp, ts = telemetry.context_of(ingress)
    telemetry.end(ingress, 202)
    trig = tracing.trigger(TRIGGER, BROKER, event("1"), tp, ts)
    send = tracing.send(trig, TRIGGER.subscriber_uri, 1)
    telemetry.end(send, 404, True)
    reply = tracing.reply(send, BROKER.address)
    telemetry.end(reply, 202, False)
    dead = tracing.dead_letter(trig, "http://dls/")
    telemetry.end(dead, None)
    telemetry.end_trigger(trig, "dead_lettered", True)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    parent = {n: s.parent.span_id if s.parent else None for n, s in spans.items()}
    ids = {n: s.context.span_id for n, s in spans.items()}
    assert parent == {
        "broker:b.ns": None,
        "trigger:t.ns": ids["broker:b.ns"],
        "send http://sub/": ids["trigger:t.ns"],
        f"reply {BROKER.address}": ids["send http://sub/"],
        "dead-letter http://dls/": ids["trigger:t.ns"],
    }
    assert spans["send http://sub/"].status.status_code is trace.StatusCode.ERROR
    assert spans[f"reply {BROKER.address}"].status.status_code is trace.StatusCode.UNSET
    assert spans["dead-letter http://dls/"].status.status_code is trace.StatusCode.ERROR
    assert (spans["trigger:t.ns"].attributes or {})["kbroker.delivery.outcome"] == "dead_lettered"
    assert (spans["send http://sub/"].attributes or {})["kbroker.delivery.attempt"] == 1


@pytest.mark.parametrize(
    "sampler", ["parentbased_traceidratio", "parentbased_always_on", "always_on"]
)
def test_unsampled_parents(sampler: str) -> None:
    """Parent-based: the producer's "not sampled" holds for every hop, yet the context still
    propagates (new span ids, same trace, flags 00). always_on ignores the parent's choice."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=telemetry.build_sampler(sampler, 1.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = telemetry.Tracing(provider)
    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    span = tracing.ingress(BROKER, [event("1")], unsampled, None)
    tp, ts = telemetry.context_of(span)
    trig = tracing.trigger(TRIGGER, BROKER, event("1"), tp, ts)
    send = tracing.send(trig, TRIGGER.subscriber_uri, 1)
    sent, _ = telemetry.context_of(send)
    for s in (send, trig, span):
        telemetry.end(s, 200)
    assert tp is not None and sent is not None
    ids = {unsampled.split("-")[2], tp.split("-")[2], sent.split("-")[2]}
    assert len(ids) == 3
    assert {tp.split("-")[1], sent.split("-")[1]} == {"0af7651916cd43dd8448eb211c80319c"}
    recorded = len(exporter.get_finished_spans())
    if sampler == "always_on":
        assert recorded == 3 and sent.endswith("-01")
    else:
        assert recorded == 0 and tp.endswith("-00") and sent.endswith("-00")
