"""Settings: frozen dataclasses, each field with its default, read from flags/environment once.

Nothing else in the project reads `os.environ` (OpenTelemetry's own `OTEL_*` variables excepted,
which its SDK reads by design). Components receive the settings object they need.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kbroker.core import ttl
from kbroker.core.events import DecodeLimits


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one ingress HTTP server lets a client hold: the table in docs/limits.md.

    The header block must fit what the broker itself sends when it delivers an event at the
    attribute caps (`DecodeLimits.max_attributes`, `max_attribute_bytes`) plus ordinary HTTP
    headers, so a reply that echoes such an event is accepted back: `IngressSettings` checks it.
    """

    max_header_bytes: int = 60 * 1024  # request line + header block (Envoy: 60 KiB) -> 431
    max_header_count: int = 128  # headers per request (Envoy: 100; + room for 100 attributes)
    header_timeout: float = 10.0  # seconds from a request's first byte to its last header -> 408
    body_grace: float = 10.0  # seconds a body may take before min_body_rate is enforced
    min_body_rate: int = 1024  # bytes/s averaged over the body so far, after body_grace -> 408
    idle_timeout: float = 30.0  # seconds a keep-alive connection may sit between requests
    max_connections: int = 10_000  # open connections; beyond: 503 + close, others untouched
    max_buffered_body_bytes: int = 256 * 1024 * 1024  # all bodies being read at once -> 503


# Headers a delivery carries besides the event's ce- attributes (host, content-length,
# content-type, traceparent, tracestate, user-agent, authorization, ...), and their bytes.
HTTP_HEADER_RESERVE = 16
HTTP_HEADER_BYTES_RESERVE = 8 * 1024


@dataclass(frozen=True, slots=True)
class IngressSettings:
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    server: ServerLimits = field(default_factory=ServerLimits)
    max_ttl: int = ttl.DEFAULT  # knativebrokerttl given to events that arrive without one
    append_timeout: float = 5.0  # seconds before a slow channel turns into 503
    retry_after: int = 1  # seconds advertised in Retry-After on 503
    add_arrival_time: bool = True  # add the knativearrivaltime extension, as Knative does

    def __post_init__(self) -> None:
        # What ingress accepts it must be able to deliver, and take back as a reply.
        s, d = self.server, self.limits
        if s.max_header_count < d.max_attributes + HTTP_HEADER_RESERVE:
            raise ValueError(
                f"max_header_count {s.max_header_count} must be at least max_attributes "
                f"{d.max_attributes} + {HTTP_HEADER_RESERVE}"
            )
        if s.max_header_bytes < d.max_attribute_bytes + HTTP_HEADER_BYTES_RESERVE:
            raise ValueError(
                f"max_header_bytes {s.max_header_bytes} must be at least max_attribute_bytes "
                f"{d.max_attribute_bytes} + {HTTP_HEADER_BYTES_RESERVE}"
            )
        if s.max_buffered_body_bytes < d.max_body_bytes:
            raise ValueError("max_buffered_body_bytes must be at least max_body_bytes")


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    data_dir: Path = Path("data")
    retention_bytes: int = 1024**3  # per broker; oldest fully-consumed events go first
    retention_seconds: float = 7 * 24 * 3600.0
    group_commit_max: int = 1000  # events per transaction at most
    busy_timeout: float = 2.0  # seconds SQLite waits on a lock before the append fails (503)
    # Several processes append to the same logs (kbroker run --processes N): their writers take
    # turns through a lock file. Off for one process, where the lock would only cost GIL hand-offs.
    shared_writers: bool = False


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: str | None = None  # cluster of brokers whose config names no bootstrap.servers
    default_partitions: int = 10  # Knative's kafka-broker-config default
    default_replication: int = -1  # -1: the cluster's default.replication.factor
    delivery_timeout: float = 5.0  # message.timeout.ms: an append fails (503) after this
    admin_timeout: float = 10.0  # create/delete topic, delete group, committed offsets
    health_timeout: float = 1.0  # metadata request behind healthy()
    health_ttl: float = 1.0  # seconds a healthy() answer is reused
    commit_interval: float = 0.2  # seconds between asynchronous offset commits of a subscription
    fetch_buffer: int = 2000  # records a subscription holds before it stops reading
    pause_after: float = 5.0  # seconds a full buffer waits before its partitions are paused
    assignment_timeout: float = 15.0  # lag()/close() wait this long for the first assignment
    producer_config: tuple[tuple[str, str], ...] = ()  # extra librdkafka producer properties
    consumer_config: tuple[tuple[str, str], ...] = ()  # extra librdkafka consumer properties


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Serve https from certificate files, reloaded when they change (no restart).

    `ca` is only published (a Broker's `status.address.CACerts`), never used to verify anyone."""

    cert: Path | None = None  # PEM certificate chain; with `key` it turns TLS on
    key: Path | None = None  # PEM private key
    ca: Path | None = None  # PEM bundle producers should trust; default: the certificate itself
    poll_interval: float = 1.0  # seconds between looks at the files' mtimes

    @property
    def enabled(self) -> bool:
        return self.cert is not None and self.key is not None


@dataclass(frozen=True, slots=True)
class NatsSettings:
    url: str | None = None  # nats://host:port[,nats://...]; from `kbroker run --nats`
    connect_timeout: float = 2.0  # one (re)connect attempt by an append or fetch, then 503
    publish_timeout: float = 4.0  # an append waiting longer for its PubAcks fails (503)
    api_timeout: float = 4.0  # stream and consumer management requests, consumer info (lag)
    ack_wait: float = 10.0  # a fetched event nobody committed is redelivered after this
    max_ack_pending: int = 20_000  # fetched-but-uncommitted events per trigger before fetch waits
    replicas: int = 1  # stream replicas when the channel template names none
    health_ttl: float = 1.0  # seconds a healthy() answer is reused


@dataclass(frozen=True, slots=True)
class RabbitMQSettings:
    url: str | None = None  # AMQP URL of brokers whose config names none (`kbroker run --rabbitmq`)
    queue_type: str = "quorum"  # RabbitmqBrokerConfig's queueType default: quorum | classic
    connect_timeout: float = 2.0  # one connection attempt; an append while down fails within it
    op_timeout: float = 4.0  # a publish confirm or a declare/delete: then 503, never a late 202
    reconnect_backoff: float = 0.5  # after a failed connect, fail fast this long before retrying
    max_message_bytes: int = 128 * 1024 * 1024  # RabbitMQ's default max_message_size
    # Unacked messages a subscription may hold (AMQP prefetch; at least the trigger's in-flight
    # bound). Fetched-but-uncommitted records count, so it must exceed what the dispatcher reads
    # ahead, or one slow event at the head would stop the queue behind it.
    fetch_buffer: int = 2000


@dataclass(frozen=True, slots=True)
class DispatcherSettings:
    default_max_in_flight: int = 100
    default_timeout: float = 600.0  # per attempt when the delivery spec sets none (Kafka parity)
    fetch_batch: int = 500
    commit_interval: float = 0.2  # seconds between position commits of a busy trigger
    max_backoff: float = 3600.0  # cap on any single backoff wait (Knative has none: #9278)
    # Delivery log lines (retry, dead-letter, ...) per trigger and kind: a burst, then a trickle,
    # so a subscriber failing every event cannot flood the log.
    log_burst: int = 10
    log_per_interval: int = 6
    log_interval: float = 60.0  # seconds
    # PEM bundle that verifies subscribers', replies' and dead-letter sinks' https certificates
    # instead of the system trust store.
    subscriber_ca: Path | None = None
    # PEM bundle trusted in addition, for replies POSTed back to our own https ingress (its
    # --tls-ca): subscribers' CA and the broker's own need not be the same.
    ingress_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class LogSettings:
    format: str = "text"  # "text" or "json" (one object per line); KBROKER_LOG_FORMAT
    level: str = "info"


def log_format_default() -> str:
    """`--log-format`'s default: KBROKER_LOG_FORMAT, else text."""
    return env("KBROKER_LOG_FORMAT") or LogSettings().format


@dataclass(frozen=True, slots=True)
class ShutdownSettings:
    """What SIGTERM (or SIGINT) does: stop accepting, let what is in flight finish, then stop.

    `grace` bounds the whole drain of HTTP requests: a request still running when it ends is
    cancelled and its connection closed. `idle_linger` is how long a keep-alive connection that
    carries nothing may stay open during the drain: a client that sends on it meanwhile gets its
    real answer (with `Connection: close`) instead of a reset, so closing it is only ever as racy
    as an ordinary keep-alive timeout.
    """

    grace: float = 5.0  # seconds; cluster deployables default to CLUSTER_SHUTDOWN_GRACE
    idle_linger: float = 1.0  # seconds, capped by grace
    drain_workers: float = 5.0  # seconds trigger workers get to finish their deliveries


# Under Kubernetes' default terminationGracePeriodSeconds (30 s), leaving the trigger workers
# time to finish before the kubelet's SIGKILL.
CLUSTER_SHUTDOWN_GRACE = 20.0


@dataclass(frozen=True, slots=True)
class RunSettings:
    config_dir: Path = Path("examples")
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    kafka_bootstrap: str | None = None  # makes Kafka the default channel when set
    nats_url: str | None = None  # the NATS server (JetStream) of NatsJetStreamChannel brokers
    rabbitmq_url: str | None = None  # AMQP URL for RabbitMQBroker brokers naming no cluster
    topic_template: str = "knative-broker-{namespace}-{name}"  # Knative's brokers.topic.template
    group_template: str = "knative-trigger-{namespace}-{name}"  # triggers.consumergroup.template
    poll_interval: float = 0.5  # seconds between scans of the config folder
    # Seconds a Broker removed from the config folder keeps its stored events (and a removed
    # Trigger its position) before they are deleted: a file moved out and back, or an editor
    # rewriting it, must not cost events. 0 deletes at once.
    removal_grace: float = 60.0
    processes: int = 1  # ingress processes sharing the port (the first also dispatches)
    reuse_port: bool = False  # SO_REUSEPORT, so several processes accept on one port
    ingress: IngressSettings = field(default_factory=IngressSettings)
    embedded: EmbeddedSettings = field(default_factory=EmbeddedSettings)
    dispatcher: DispatcherSettings = field(default_factory=DispatcherSettings)
    logs: LogSettings = field(default_factory=LogSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    # File holding the bearer token /status, /metrics and /contract-generation require; None
    # leaves them open (the default, for a process bound to 127.0.0.1).
    ops_token_file: Path | None = None


def env(name: str, default: str | None = None) -> str | None:
    """The one place that reads the environment (KBROKER_* variables)."""
    return os.environ.get(name, default)
