"""OpenTelemetry tracing for every hop, and the one place span and metric names are defined.

Why a module of its own: ingress, the dispatcher and the CLI must agree on span names, attribute
keys and metric names (dashboards and the docs depend on them), and none of them should know how
the SDK is configured. `Tracing` is built from an injected `TracerProvider` (tests pass one with an
in-memory exporter; `kbroker run` builds one from the standard `OTEL_*` variables), never from the
global provider, so two brokers in one test process trace independently.

The span tree of one event (docs/observability.md draws it):

    producer -> broker:<name>.<ns>   (SERVER; joins the producer's traceparent)
                  == channel (Envelope.traceparent/tracestate) ==
                trigger:<name>.<ns>  (CONSUMER; child of the ingress span, per trigger)
                  send <url>         (CLIENT; one per attempt; its context goes to the subscriber)
                    reply <url>      (CLIENT; POSTs the reply, so the next ingress span is a child)
                  dead-letter <url>  (CLIENT)

Cost: `Tracing.enabled` is a plain cached boolean; callers test it before building anything, so a
broker with tracing off pays one attribute read per hop. Trace context is parsed and formatted by
hand (W3C `traceparent` is fixed-width) rather than through the propagator's regex and getters.

Deviation from the OTel default, on purpose: tracing is off unless `OTEL_TRACES_EXPORTER` names an
exporter (`otlp`, `console`), because the standard default (`otlp` to localhost:4318) would make a
laptop broker log export failures forever. Only OTLP over HTTP/protobuf is offered; a `grpc`
protocol is refused at startup rather than silently ignored.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kbroker.core import contract, settings
from kbroker.core.events import CloudEvent
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import sampling as sdk_sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.span import TraceFlags, TraceState

log = logging.getLogger(__name__)

# -- span names (formatted with the object's name and namespace, or the target URL) -------------
SPAN_INGRESS = "broker:{name}.{namespace}"
SPAN_TRIGGER = "trigger:{name}.{namespace}"
SPAN_CHANNEL = "channel:{name}.{namespace}"  # a channel's ingress (workflows are built of them)
SPAN_SUBSCRIPTION = "subscription:{name}.{namespace}"
SPAN_SEND = "send {url}"
SPAN_REPLY = "reply {url}"
SPAN_DEAD_LETTER = "dead-letter {url}"

# -- span attributes (OTel messaging / HTTP / CloudEvents semantic conventions, plus ours) -------
MESSAGING_SYSTEM_VALUE = "knative"  # what Knative's own spans say; dashboards filter on it
A_MESSAGING_SYSTEM = "messaging.system"
A_MESSAGE_ID = "messaging.message.id"
A_DESTINATION = "messaging.destination.name"
A_OPERATION_NAME = "messaging.operation.name"
A_BATCH_COUNT = "messaging.batch.message_count"
A_CONSUMER_GROUP = "messaging.consumer.group.name"
A_CE_TYPE = "cloudevents.event_type"
A_CE_SOURCE = "cloudevents.event_source"
A_HTTP_STATUS = "http.response.status_code"
A_URL = "url.full"
A_ATTEMPT = "kbroker.delivery.attempt"  # 1-based
A_OUTCOME = "kbroker.delivery.outcome"  # delivered | dead_lettered | dropped

# -- metric names (Prometheus; core/metrics.py builds them; Knative's names where one exists) ---
M_INGRESS_EVENTS = "kbroker_broker_ingress_event_count"  # Knative: mt_broker_ingress_event_count
M_INGRESS_REQUESTS = "kbroker_broker_ingress_request_count"
M_INGRESS_LATENCY = "kbroker_broker_ingress_event_dispatch_latencies_seconds"
M_INGRESS_BATCH = "kbroker_broker_ingress_batch_size"
M_INGRESS_BYTES = "kbroker_broker_ingress_bytes"
M_INGRESS_AUTH_DENIED = "kbroker_broker_ingress_auth_denied"  # 401/403 by reason
M_INGRESS_REFUSED = "kbroker_ingress_rejected"  # exposed with _total; label reason
M_CHANNEL_APPEND = "kbroker_channel_append_latencies_seconds"
M_CHANNEL_TRANSACTIONS = "kbroker_channel_transactions"
M_CHANNEL_EVENTS = "kbroker_channel_stored_events"
M_CHANNEL_BYTES = "kbroker_channel_storage_bytes"
M_EVENTS_LOST = "kbroker_events_lost"  # accepted at durability `none`, then not stored
M_TRIGGER_LAG = "kbroker_trigger_lag_events"
M_TRIGGER_EVENTS = "kbroker_trigger_event_count"  # Knative: mt_broker_filter_event_count
M_TRIGGER_LATENCY = "kbroker_trigger_event_dispatch_latencies_seconds"
M_TRIGGER_E2E = "kbroker_trigger_event_e2e_latencies_seconds"
M_TRIGGER_RETRIES = "kbroker_trigger_retries"
M_TRIGGER_OUTCOMES = "kbroker_trigger_outcomes"
M_TRIGGER_IN_FLIGHT = "kbroker_trigger_in_flight"
M_RECONCILES = "kbroker_controller_reconcile_count"
M_RECONCILE_LATENCY = "kbroker_controller_reconcile_latencies_seconds"
M_OBJECTS = "kbroker_controller_objects"

_DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
_DEFAULT_SAMPLER = "parentbased_always_on"
_DEFAULT_SERVICE = "kbroker"

_SAMPLERS: dict[str, Callable[[float], sdk_sampling.Sampler]] = {
    "always_on": lambda _r: sdk_sampling.ALWAYS_ON,
    "always_off": lambda _r: sdk_sampling.ALWAYS_OFF,
    "traceidratio": sdk_sampling.TraceIdRatioBased,
    "parentbased_always_on": lambda _r: sdk_sampling.ParentBased(sdk_sampling.ALWAYS_ON),
    "parentbased_always_off": lambda _r: sdk_sampling.ParentBased(sdk_sampling.ALWAYS_OFF),
    "parentbased_traceidratio": lambda r: sdk_sampling.ParentBased(
        sdk_sampling.TraceIdRatioBased(r)
    ),
}


class TelemetryConfigError(ValueError):
    """An OTEL_* variable has a value kbroker cannot honour (named in the message)."""


@dataclass(frozen=True, slots=True)
class TraceSettings:
    """The standard OTel variables kbroker honours (defaults: the OTel spec's, except exporters)."""

    exporters: tuple[str, ...] = ()  # OTEL_TRACES_EXPORTER: otlp, console, none (default none)
    endpoint: str = _DEFAULT_ENDPOINT  # OTLP traces URL (full path)
    sampler: str = _DEFAULT_SAMPLER  # OTEL_TRACES_SAMPLER
    ratio: float = 1.0  # OTEL_TRACES_SAMPLER_ARG, for the *traceidratio samplers
    service_name: str = _DEFAULT_SERVICE  # OTEL_SERVICE_NAME


def trace_settings(env: Callable[[str], str | None] = settings.env) -> TraceSettings:
    """TraceSettings from the standard OTEL_* variables (read through core.settings.env)."""
    if (env("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return TraceSettings()
    names = (env("OTEL_TRACES_EXPORTER") or "none").lower()
    exporters = tuple(n.strip() for n in names.split(",") if n.strip() not in ("", "none"))
    for name in exporters:
        if name not in ("otlp", "console"):
            raise TelemetryConfigError(f"OTEL_TRACES_EXPORTER={name!r}: use otlp, console or none")
    protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env("OTEL_EXPORTER_OTLP_PROTOCOL")
    if "otlp" in exporters and protocol not in (None, "", "http/protobuf"):
        raise TelemetryConfigError(f"OTLP protocol {protocol!r}: only http/protobuf is supported")
    endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not endpoint:
        base = env("OTEL_EXPORTER_OTLP_ENDPOINT")
        endpoint = base.rstrip("/") + "/v1/traces" if base else _DEFAULT_ENDPOINT
    sampler = (env("OTEL_TRACES_SAMPLER") or _DEFAULT_SAMPLER).strip().lower()
    if sampler not in _SAMPLERS:
        raise TelemetryConfigError(f"OTEL_TRACES_SAMPLER={sampler!r}: one of {sorted(_SAMPLERS)}")
    raw = env("OTEL_TRACES_SAMPLER_ARG")
    try:
        ratio = float(raw) if raw else 1.0
    except ValueError:
        raise TelemetryConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a number") from None
    return TraceSettings(
        exporters=exporters,
        endpoint=endpoint,
        sampler=sampler,
        ratio=min(1.0, max(0.0, ratio)),
        service_name=env("OTEL_SERVICE_NAME") or _DEFAULT_SERVICE,
    )


class _Resource(Resource):
    """A Resource that hashes once: the OTLP encoder groups spans by resource, hashing it per
    span, and the SDK's hash serialises every attribute to JSON (~8 us, three times per event).
    A resource never changes after start, so its hash cannot either."""

    def __init__(self, base: Resource) -> None:
        super().__init__(base.attributes, base.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


def build_sampler(name: str, ratio: float) -> sdk_sampling.Sampler:
    """The sampler an OTEL_TRACES_SAMPLER name (and its ratio argument) stands for."""
    return _SAMPLERS[name](ratio)


def build_provider(ts: TraceSettings) -> TracerProvider | None:
    """A provider exporting in batches as configured; None when tracing is off."""
    if not ts.exporters or ts.sampler == "always_off":
        return None
    provider = TracerProvider(
        sampler=build_sampler(ts.sampler, ts.ratio),
        resource=_Resource(Resource.create({"service.name": ts.service_name})),
    )
    for name in ts.exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=ts.endpoint)
        else:
            exporter = ConsoleSpanExporter()
        # BatchSpanProcessor reads OTEL_BSP_* itself: export never runs on the event path.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info(
        "tracing on: exporters=%s endpoint=%s sampler=%s ratio=%g service=%s",
        ",".join(ts.exporters),
        ts.endpoint if "otlp" in ts.exporters else "-",
        ts.sampler,
        ts.ratio,
        ts.service_name,
    )
    return provider


# -- W3C trace context, by hand: "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>" ------------


def parse_traceparent(value: str | None, tracestate: str | None = None) -> trace.SpanContext | None:
    """The remote parent named by a traceparent header; None when absent or malformed."""
    if not value or len(value) < 55:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or len(parts[1]) != 32:
        return None
    if len(parts[2]) != 16 or len(parts[3]) != 2 or (parts[0] == "00" and len(parts) != 4):
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    state = TraceState.from_header([tracestate]) if tracestate else None
    return trace.SpanContext(trace_id, span_id, True, TraceFlags(flags), state)


def format_traceparent(ctx: trace.SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def context_of(span: Span) -> tuple[str | None, str | None]:
    """(traceparent, tracestate) to carry beside an event or put on a request."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None, None
    state = ctx.trace_state.to_header() if ctx.trace_state else None
    return format_traceparent(ctx), state or None


def _parent(ctx: trace.SpanContext | None) -> Context | None:
    return trace.set_span_in_context(trace.NonRecordingSpan(ctx)) if ctx is not None else None


# Attributes are few on purpose: each one costs ~5-10 us to record and to encode to OTLP in
# Python, per span. Nothing is repeated that the span name or the parent already says (the
# CloudEvent id is messaging.message.id; the broker is messaging.destination.name; the trigger
# is messaging.consumer.group.name; the event's source is on the ingress span only).


class Tracing:
    """Span factories for each hop; a disabled instance (provider None) is never called on."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self.provider = provider
        self.enabled = provider is not None
        self._tracer = provider.get_tracer("kbroker") if provider is not None else None
        # Under a parent-based sampler an unsampled parent means an unsampled child, so such
        # children skip the SDK (sampler call, id generator, span object): at 10% sampling, 90%
        # of the trigger and send spans take this path.
        self._parent_based = isinstance(
            getattr(provider, "sampler", None), sdk_sampling.ParentBased
        )

    def _start(
        self,
        name: str,
        parent: trace.SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, str | int],
        start_ns: int | None = None,
    ) -> Span:
        assert self._tracer is not None, "callers check Tracing.enabled first"
        if parent is not None and self._parent_based and not parent.trace_flags.sampled:
            ctx = trace.SpanContext(
                parent.trace_id,
                random.getrandbits(64) or 1,
                False,
                parent.trace_flags,
                parent.trace_state,
            )
            return trace.NonRecordingSpan(ctx)
        return self._tracer.start_span(name, _parent(parent), kind, attributes, start_time=start_ns)

    def ingress(
        self,
        broker: contract.Broker,
        evs: Sequence[CloudEvent],
        parent_tp: str | None,
        parent_ts: str | None,
        started: float | None = None,
    ) -> Span:
        """The broker's receive span, joining the producer's trace; `started` (perf_counter) dates
        it back to the request's arrival, so the span covers reading and decoding too.

        The HTTP `traceparent` header (the hop that reached us) wins over the CloudEvents
        distributed-tracing extension (the event's origin), which is used when no header came.
        """
        if parent_tp is None and evs:
            ext = evs[0].attributes.get("traceparent")
            if isinstance(ext, str):
                parent_tp = ext
                state = evs[0].attributes.get("tracestate")
                parent_ts = state if isinstance(state, str) else None
        attrs: dict[str, str | int] = {
            A_MESSAGING_SYSTEM: MESSAGING_SYSTEM_VALUE,
            A_DESTINATION: broker.key,
            A_OPERATION_NAME: "send",
        }
        if len(evs) == 1:
            ce = evs[0].attributes
            attrs[A_MESSAGE_ID] = str(ce.get("id", ""))
            attrs[A_CE_TYPE] = str(ce.get("type", ""))
            attrs[A_CE_SOURCE] = str(ce.get("source", ""))
        else:
            attrs[A_BATCH_COUNT] = len(evs)
        form = SPAN_CHANNEL if broker.kind == contract.CHANNEL else SPAN_INGRESS
        name = form.format(name=broker.name, namespace=broker.namespace)
        start_ns = None
        if started is not None:
            start_ns = time.time_ns() - int((time.perf_counter() - started) * 1e9)
        return self._start(
            name, parse_traceparent(parent_tp, parent_ts), SpanKind.SERVER, attrs, start_ns
        )

    def trigger(
        self,
        trigger: contract.Trigger,
        broker: contract.Broker,
        event: CloudEvent,
        traceparent: str | None,
        tracestate: str | None,
    ) -> Span:
        """One event's processing for one trigger: a child of the ingress span in the envelope."""
        ce = event.attributes
        attrs: dict[str, str | int] = {
            A_MESSAGING_SYSTEM: MESSAGING_SYSTEM_VALUE,
            A_DESTINATION: broker.key,
            A_OPERATION_NAME: "process",
            A_CONSUMER_GROUP: f"{trigger.namespace}/{trigger.name}",
            A_MESSAGE_ID: str(ce.get("id", "")),
            A_CE_TYPE: str(ce.get("type", "")),
        }
        form = SPAN_SUBSCRIPTION if trigger.kind == contract.SUBSCRIPTION else SPAN_TRIGGER
        name = form.format(name=trigger.name, namespace=trigger.namespace)
        parent = parse_traceparent(traceparent, tracestate)
        return self._start(name, parent, SpanKind.CONSUMER, attrs)

    def send(self, parent: Span, url: str, attempt: int) -> Span:
        """One delivery attempt to the subscriber (HTTP client span)."""
        attrs: dict[str, str | int] = {A_URL: url, A_ATTEMPT: attempt}
        return self._start(
            SPAN_SEND.format(url=url), parent.get_span_context(), SpanKind.CLIENT, attrs
        )

    def reply(self, parent: Span, url: str) -> Span:
        """Storing a subscriber's reply through the broker's ingress."""
        attrs: dict[str, str | int] = {A_URL: url}
        return self._start(
            SPAN_REPLY.format(url=url), parent.get_span_context(), SpanKind.CLIENT, attrs
        )

    def dead_letter(self, parent: Span, url: str) -> Span:
        """Delivering a failed event to the dead-letter sink (all its rounds)."""
        attrs: dict[str, str | int] = {A_URL: url}
        return self._start(
            SPAN_DEAD_LETTER.format(url=url), parent.get_span_context(), SpanKind.CLIENT, attrs
        )

    def shutdown(self) -> None:
        """Flush and stop the exporters (end of process)."""
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def end(span: Span, status: int | None, error: bool | None = None) -> None:
    """Close a span with its HTTP status; by default 5xx (or no response) marks an error, as
    the HTTP server conventions say; client spans pass `error` (any non-2xx) themselves."""
    if status is not None:
        span.set_attribute(A_HTTP_STATUS, status)
    failed = (status is None or status >= 500) if error is None else error
    if failed:
        span.set_status(StatusCode.ERROR)
    span.end()


def end_trigger(span: Span, outcome: str, failed: bool) -> None:
    span.set_attribute(A_OUTCOME, outcome)
    if failed:
        span.set_status(StatusCode.ERROR)
    span.end()


def disabled() -> Tracing:
    return Tracing(None)
