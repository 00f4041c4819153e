"""Prometheus metrics for ingress, channels, the dispatcher and the controller, served at /metrics.

Why prometheus-client rather than OTel metrics with a Prometheus reader: the hot path increments
a counter and observes a histogram per request and per delivery attempt, where the OTel SDK hashes
an attribute dict on every call; prometheus-client's text exposition is the format Prometheus and
Grafana expect without an extra reader package (opentelemetry-exporter-prometheus is not a
dependency). The per-event metrics go one step further: they are `_hot_metrics` collectors (a
plain add per update, no lock), with children resolved once per label tuple and cached here.
Metric *names* still live in core/telemetry.py only.

No globals: each `Metrics` owns a `CollectorRegistry`, so two brokers in one test process count
separately. Cardinality is bounded: event types are capped per broker (the first
`max_event_types` seen keep their name, later ones count as `other`), broker labels of unknown
brokers (404s: the path is the client's choice) collapse to `unknown`, and no label ever carries
an event id.

Gauges that describe state (trigger lag, in-flight, storage bytes, channel commit counters) are
read when scraped (`refresh`/the collector below), not maintained per event.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kbroker.core import _hot_metrics as hot
from kbroker.core import contract, delivery, events, reporters, telemetry
from kbroker.core.channel import Channel
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
UNKNOWN = "unknown"
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
E2E_BUCKETS = (*LATENCY_BUCKETS, 120.0, 300.0, 600.0, 1800.0, 3600.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def code_class(status: int | None) -> str:
    return f"{status // 100}xx" if status is not None else "none"


@dataclass(frozen=True, slots=True)
class TriggerState:
    """One trigger's scrape-time state, gathered by the caller (which can see the workers)."""

    namespace: str
    name: str
    broker: str
    lag: int | None
    in_flight: int


class Metrics:
    """Every metric of one broker process; an IngressReporter and a DispatchReporter."""

    def __init__(self, max_event_types: int = 100, max_brokers: int = 1000) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.max_event_types = max_event_types
        self.max_brokers = max_brokers
        broker = ("namespace_name", "broker_name")
        trig = ("namespace_name", "trigger_name", "broker_name")
        code = ("response_code", "response_code_class")
        self.ingress_events = hot.Counter(
            telemetry.M_INGRESS_EVENTS,
            "Events received by the broker ingress, by type and answer (rejected requests count"
            " once, as event_type unknown)",
            (*broker, "event_type", *code),
            registry=r,
        )
        self.ingress_requests = hot.Counter(
            telemetry.M_INGRESS_REQUESTS,
            "HTTP requests to broker ingress",
            (*broker, *code),
            registry=r,
        )
        self.ingress_latency = hot.Histogram(
            telemetry.M_INGRESS_LATENCY,
            "Time from request arrival to the answer, accepted requests",
            broker,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ingress_batch = hot.Histogram(
            telemetry.M_INGRESS_BATCH,
            "Events per accepted request",
            broker,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.ingress_bytes = hot.Counter(
            telemetry.M_INGRESS_BYTES, "Request body bytes of accepted requests", broker, registry=r
        )
        self.ingress_refused = Counter(
            telemetry.M_INGRESS_REFUSED,
            "Requests or connections ingress refused for a resource limit, by reason",
            ("reason",),
            registry=r,
        )
        self._refused = {
            reason: self.ingress_refused.labels(reason) for reason in reporters.REFUSAL_REASONS
        }
        self.append_latency = hot.Histogram(
            telemetry.M_CHANNEL_APPEND,
            "channel.append time (until safe at the request's durability), accepted requests",
            ("channel", *broker),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.trigger_events = hot.Counter(
            telemetry.M_TRIGGER_EVENTS,
            "Delivery attempts to subscribers, by answer (response_code none: no response)",
            (*trig, *code),
            registry=r,
        )
        self.trigger_latency = hot.Histogram(
            telemetry.M_TRIGGER_LATENCY,
            "Time of one delivery attempt to the subscriber (request to response)",
            (*trig, "response_code_class"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.trigger_e2e = hot.Histogram(
            telemetry.M_TRIGGER_E2E,
            "From ingress acceptance (envelope arrival) to successful delivery",
            trig,
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.trigger_retries = hot.Counter(
            telemetry.M_TRIGGER_RETRIES, "Delivery retries scheduled", trig, registry=r
        )
        self.trigger_outcomes = hot.Counter(
            telemetry.M_TRIGGER_OUTCOMES,
            "Final outcomes per event and trigger: delivered, dead_lettered, dropped",
            (*trig, "outcome"),
            registry=r,
        )
        self.trigger_lag = Gauge(
            telemetry.M_TRIGGER_LAG,
            "Events stored after the trigger's committed position",
            trig,
            registry=r,
        )
        self.trigger_in_flight = Gauge(
            telemetry.M_TRIGGER_IN_FLIGHT, "Deliveries running now", trig, registry=r
        )
        self.auth_denied = Counter(
            telemetry.M_INGRESS_AUTH_DENIED,
            "Requests refused by sender authentication (401) or authorization (403), by reason",
            (*broker, "response_code", "reason"),
            registry=r,
        )
        self.reconciles = Counter(
            telemetry.M_RECONCILES,
            "Objects reconciled (one per object per configuration change), by kind and result",
            ("kind", "result"),
            registry=r,
        )
        self.reconcile_latency = Histogram(
            telemetry.M_RECONCILE_LATENCY,
            "Time to apply one compiled configuration (storage, contract, workers)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.objects = Gauge(
            telemetry.M_OBJECTS,
            "Objects by kind and Ready condition",
            ("kind", "ready"),
            registry=r,
        )
        # Bound children, resolved once per label tuple: .labels() is the slow part.
        self._ingress: dict[contract.BrokerKey, _IngressChildren] = {}
        self._types: dict[tuple[str, str], hot.CounterValue] = {}
        self._type_count: dict[str, int] = {}
        self._other: dict[str, hot.CounterValue] = {}
        self._rejected: dict[tuple[str, int], tuple[hot.CounterValue, hot.CounterValue]] = {}
        self._attempts: dict[
            tuple[str, str, int | None], tuple[hot.CounterValue, hot.HistogramValue]
        ] = {}
        self._per_trigger: dict[tuple[str, str], _TriggerChildren] = {}

    # -- ingress (reporters.IngressReporter) ---------------------------------------------------
    def accepted(
        self,
        broker: contract.Broker,
        evs: list[events.CloudEvent],
        nbytes: int,
        seconds: float,
        append_seconds: float,
    ) -> None:
        c = self._ingress.get(broker.key)
        if c is None:
            c = self._ingress[broker.key] = _IngressChildren.of(self, broker)
        c.requests.inc()
        c.latency.observe(seconds)
        c.batch.observe(len(evs))
        c.nbytes.inc(nbytes)
        c.append.observe(append_seconds)
        key = broker.key
        for ev in evs:
            etype = ev.attributes.get("type")
            child = self._types.get((key, etype))  # type: ignore[arg-type]
            if child is None:
                child = self._type_child(broker, str(etype))
            child.inc()

    def _type_child(self, broker: contract.Broker, etype: str) -> hot.CounterValue:
        seen = self._type_count.get(broker.key, 0)
        if seen >= self.max_event_types:
            # Not cached under the type: the cache must stay as bounded as the labels.
            other = self._other.get(broker.key)
            if other is None:
                other = self._other[broker.key] = self.ingress_events.labels(
                    broker.namespace, broker.name, OTHER, "202", "2xx"
                )
            return other
        self._type_count[broker.key] = seen + 1
        child = self.ingress_events.labels(broker.namespace, broker.name, etype, "202", "2xx")
        self._types[(broker.key, etype)] = child
        return child

    def rejected(self, broker_key: str, status: int, seconds: float) -> None:
        cached = self._rejected.get((broker_key, status))
        if cached is None:
            ns, _, name = broker_key.partition("/")
            if status == 404 or len(self._rejected) >= self.max_brokers:
                ns = name = UNKNOWN
            labels = (ns, name, str(status), code_class(status))
            cached = (
                self.ingress_events.labels(ns, name, UNKNOWN, *labels[2:]),
                self.ingress_requests.labels(*labels),
            )
            self._rejected[(broker_key, status)] = cached
        cached[0].inc()
        cached[1].inc()

    def denied(self, broker_key: str, status: int, reason: str) -> None:
        # Only brokers with authentication-oidc on get here, and reasons are a fixed set, so the
        # label count stays bounded by the contract.
        ns, _, name = broker_key.partition("/")
        self.auth_denied.labels(ns, name, str(status), reason).inc()

    def refused(self, reason: str) -> None:
        self._refused[reason].inc()

    # -- dispatcher (reporters.DispatchReporter) -----------------------------------------------
    def attempt(self, trigger: contract.Trigger, status: int | None, seconds: float) -> None:
        key = (trigger.namespace, trigger.name, status)
        cached = self._attempts.get(key)
        if cached is None:
            labels = (trigger.namespace, trigger.name, trigger.broker)
            cached = (
                self.trigger_events.labels(*labels, str(status or "none"), code_class(status)),
                self.trigger_latency.labels(*labels, code_class(status)),
            )
            self._attempts[key] = cached
        cached[0].inc()
        cached[1].observe(seconds)

    def _trigger(self, trigger: contract.Trigger) -> _TriggerChildren:
        key = (trigger.namespace, trigger.name)
        c = self._per_trigger.get(key)
        if c is None:
            c = self._per_trigger[key] = _TriggerChildren.of(self, trigger)
        return c

    def retry(self, trigger: contract.Trigger) -> None:
        self._trigger(trigger).retries.inc()

    def finished(
        self, trigger: contract.Trigger, result: delivery.Result, envelope_arrival: float
    ) -> None:
        c = self._trigger(trigger)
        c.outcomes[result.outcome.value].inc()
        if result.outcome is delivery.Outcome.DELIVERED and envelope_arrival > 0:
            c.e2e.observe(max(0.0, time.time() - envelope_arrival))

    # -- controller ------------------------------------------------------------------------------
    def reconciled(self, objects: Iterable[tuple[str, bool]], seconds: float) -> None:
        """One applied configuration: (kind, ready) per object, and how long applying took."""
        counts: dict[tuple[str, str], int] = {}
        for kind, ready in objects:
            self.reconciles.labels(kind, "ready" if ready else "not_ready").inc()
            k = (kind, "true" if ready else "false")
            counts[k] = counts.get(k, 0) + 1
        self.objects.clear()
        for (kind, ready_label), n in counts.items():
            self.objects.labels(kind, ready_label).set(n)
        self.reconcile_latency.observe(seconds)

    # -- scrape ----------------------------------------------------------------------------------
    def refresh(self, triggers: Sequence[TriggerState]) -> None:
        """Scrape-time trigger gauges; triggers no longer running disappear."""
        self.trigger_lag.clear()
        self.trigger_in_flight.clear()
        for t in triggers:
            labels = (t.namespace, t.name, t.broker)
            if t.lag is not None:
                self.trigger_lag.labels(*labels).set(t.lag)
            self.trigger_in_flight.labels(*labels).set(t.in_flight)

    def watch_channels(
        self,
        channels: Mapping[str, Channel],
        brokers: Callable[[], Sequence[contract.Broker]],
        storage_bytes: Callable[[Channel, contract.Broker], int | None],
    ) -> None:
        """Report each broker's channel counters and storage size at scrape time."""
        self.registry.register(_ChannelCollector(channels, brokers, storage_bytes))

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True, slots=True)
class _IngressChildren:
    requests: hot.CounterValue
    latency: hot.HistogramValue
    batch: hot.HistogramValue
    nbytes: hot.CounterValue
    append: hot.HistogramValue

    @staticmethod
    def of(m: Metrics, broker: contract.Broker) -> _IngressChildren:
        labels = (broker.namespace, broker.name)
        return _IngressChildren(
            m.ingress_requests.labels(*labels, "202", "2xx"),
            m.ingress_latency.labels(*labels),
            m.ingress_batch.labels(*labels),
            m.ingress_bytes.labels(*labels),
            m.append_latency.labels(broker.channel, *labels),
        )


@dataclass(frozen=True, slots=True)
class _TriggerChildren:
    retries: hot.CounterValue
    e2e: hot.HistogramValue
    outcomes: dict[str, hot.CounterValue]

    @staticmethod
    def of(m: Metrics, trigger: contract.Trigger) -> _TriggerChildren:
        labels = (trigger.namespace, trigger.name, trigger.broker)
        return _TriggerChildren(
            m.trigger_retries.labels(*labels),
            m.trigger_e2e.labels(*labels),
            {o.value: m.trigger_outcomes.labels(*labels, o.value) for o in delivery.Outcome},
        )


class _ChannelCollector:
    """Channel state read when scraped: `stats(broker)` counters (the embedded log's group commit:
    stored_events / transactions is the mean group size) and storage bytes, where available."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        brokers: Callable[[], Sequence[contract.Broker]],
        storage_bytes: Callable[[Channel, contract.Broker], int | None],
    ) -> None:
        self.channels = channels
        self.brokers = brokers
        self.storage_bytes = storage_bytes

    def collect(self) -> Iterator[Metric]:
        labels = ["channel", "namespace_name", "broker_name"]
        tx = CounterMetricFamily(
            telemetry.M_CHANNEL_TRANSACTIONS, "Write transactions (group commits)", labels=labels
        )
        stored = CounterMetricFamily(
            telemetry.M_CHANNEL_EVENTS, "Events written by the channel", labels=labels
        )
        size = GaugeMetricFamily(
            telemetry.M_CHANNEL_BYTES, "Bytes the broker's storage takes", labels=labels
        )
        lost = CounterMetricFamily(
            telemetry.M_EVENTS_LOST,
            "Events accepted at durability none and then lost by a failed write",
            labels=[*labels, "reason"],
        )
        for b in self.brokers():
            channel = self.channels.get(b.channel)
            if channel is None:
                continue
            values = [b.channel, b.namespace, b.name]
            stats = getattr(channel, "stats", None)
            if stats is not None:
                try:
                    s = stats(b)
                    tx.add_metric(values, s.transactions)
                    stored.add_metric(values, s.events)
                    for why, count in getattr(s, "lost", {}).items():
                        lost.add_metric([*values, why], count)
                except Exception:  # a broker whose log is not open yet has no counters
                    pass
            nbytes = self.storage_bytes(channel, b)
            if nbytes is not None:
                size.add_metric(values, nbytes)
        yield tx
        yield stored
        yield size
        yield lost


def storage_bytes_for(embedded_dir: Path) -> Callable[[Channel, contract.Broker], int | None]:
    """Storage size per broker: a channel's own `storage_bytes(broker)` when it offers one, else
    the embedded log's files (database + WAL) under `embedded_dir`; None when unknown (Kafka)."""
    from kbroker.core.channels.embedded import db_path

    def size(channel: Channel, broker: contract.Broker) -> int | None:
        own = getattr(channel, "storage_bytes", None)
        if own is not None:
            value: int | None = own(broker)
            return value
        if channel.name != "embedded":
            return None
        path = db_path(embedded_dir, broker)
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(f"{path}{suffix}").st_size
            except OSError:
                continue
        return total

    return size
