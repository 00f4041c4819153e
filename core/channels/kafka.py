"""The Kafka channel: a topic per Broker, a consumer group per Trigger, over confluent-kafka.

Why it exists: in cluster mode a broker's events live in Apache Kafka, as in Knative's Kafka
broker, so other Kafka tooling can read and write the same topics. This is the only module that
imports `confluent_kafka`; its exceptions are translated here into `core.channel` errors.

Shape, per Kafka cluster (one per distinct `bootstrap.servers`):

    append --produce()--> Producer[acks=1 (none, leader) | acks=all+idempotence (all)]  (lazily)
            <-future---   poll thread: delivery callbacks -> call_soon_threadsafe
    Subscription: Consumer thread --poll/consume--> decoded Records in a bounded buffer --> fetch()
                  commit() only records the offset; the thread commits asynchronously, and
                  synchronously on revoke and close.

Records use the CloudEvents Kafka binary binding (`core.events.to_kafka/from_kafka`, key =
partitionkey); what travels beside the event rides in extra headers (`kb_arrival`, `traceparent`,
`tracestate`, `kb_types`) that `from_kafka` ignores. Structured records from other producers are
read too. docs/kafka.md has the configuration and the measurements.

Decisions worth knowing:
- A LATEST trigger starts at the first record stamped at or after `subscribe()` (offsets_for_times),
  and that start is committed as soon as partitions are assigned, so a restart before the first
  commit skips nothing. `close()` waits (bounded) for that first assignment.
- `lag()` counts the partitions this member holds: members of one group add up, never overlap.
- A commit for a partition this member no longer holds is dropped: the new owner re-reads from the
  committed position (at-least-once, like any Kafka consumer).
- A record that is not a CloudEvent is logged and skipped; a later commit moves past it.
- `none` durability shares the acks=1 producer (see _PRODUCER_OF for why not acks=0).
- Longer than the house style's 400 lines: producer and consumer sides both need confluent_kafka,
  which the import rules keep to this one module.

What it refuses to do: create or delete an external topic, block the event loop on a client call,
or wait without a bound (delivery, admin and assignment waits all have timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.cimpl import NewTopic
from kbroker.core import contract
from kbroker.core.channel import (
    ChannelError,
    ChannelUnavailable,
    Envelope,
    EventTooLarge,
    Record,
)
from kbroker.core.events import AttrValue, EventError, from_kafka, to_kafka

log = logging.getLogger(__name__)
# librdkafka's own log lines (one per failed connect while Kafka is down): a child logger, so an
# operator can quiet them without losing ours.
rdlog = logging.getLogger(__name__ + ".librdkafka")

ARRIVAL_HEADER = "kb_arrival"
# The binary binding turns every attribute into a string; a JSON integer or boolean that arrived in
# structured mode keeps its type through this header ("count=i,flag=b"), which other readers ignore.
TYPES_HEADER = "kb_types"
_TYPE_CODES: dict[type, str] = {bool: "b", int: "i"}
# librdkafka backs off reconnects up to 10 s by default: after a Kafka restart appends would keep
# failing that long. 1 s caps the wait at the cost of a connect attempt a second while it is down.
_CLIENT_DEFAULTS: dict[str, Any] = {"reconnect.backoff.max.ms": 1000}
# Durability -> producer. `none` shares the acks=1 producer and waits for its report too, instead of
# an acks=0 producer: acks=0 "succeeds" once the request is on the wire, so a producer's next append
# (say at `all`, on another connection) could be stored before it, and the broker drops an acks=0
# batch silently on any error. Measured here it bought ~0.4 ms per lone append and no throughput.
_PRODUCER_OF = {
    contract.Durability.NONE: "leader",
    contract.Durability.LEADER: "leader",
    contract.Durability.ALL: "all",
}
_ACKS: dict[str, dict[str, Any]] = {
    "leader": {"acks": "1"},
    "all": {"acks": "all", "enable.idempotence": True},
}


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
    fetch_buffer: int = 2000  # records a subscription holds before pausing its partitions
    assignment_timeout: float = 15.0  # lag()/close() wait this long for the first assignment
    producer_config: tuple[tuple[str, str], ...] = ()  # extra librdkafka producer properties
    consumer_config: tuple[tuple[str, str], ...] = ()  # extra librdkafka consumer properties


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A broker's `kafka-broker-config` ConfigMap, parsed (channel_config pairs)."""

    bootstrap: str
    partitions: int
    replication: int
    config: tuple[tuple[str, str], ...]  # default.topic.config.<k> -> topic config <k>

    @staticmethod
    def parse(pairs: Sequence[tuple[str, str]], settings: KafkaSettings) -> TopicSpec:
        conf = dict(pairs)
        bootstrap = conf.get("bootstrap.servers") or settings.bootstrap
        if not bootstrap:
            raise ChannelError("kafka channel: no bootstrap.servers in the broker config")
        try:
            partitions = int(conf.get("default.topic.partitions", settings.default_partitions))
            replication = int(
                conf.get("default.topic.replication.factor", settings.default_replication)
            )
        except ValueError as e:
            raise ChannelError(f"kafka channel: bad broker config: {e}") from None
        prefix = "default.topic.config."
        topic_conf = tuple((k[len(prefix) :], v) for k, v in conf.items() if k.startswith(prefix))
        return TopicSpec(bootstrap, partitions, replication, topic_conf)


def topic_of(broker: contract.Broker) -> str:
    return broker.topic or f"knative-broker-{broker.namespace}-{broker.name}"


def group_of(trigger: contract.Trigger) -> str:
    return trigger.consumer_group or f"knative-trigger-{trigger.namespace}-{trigger.name}"


def translate(err: KafkaError | None, what: str) -> ChannelError:
    """A librdkafka error as the channel error a caller can act on."""
    if err is None:
        return ChannelUnavailable(f"{what}: unknown Kafka error")
    code = err.code()
    message = f"{what}: {err.str()}"
    if code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE):
        return EventTooLarge(message)
    if code in (KafkaError.INVALID_REPLICATION_FACTOR, KafkaError.INVALID_PARTITIONS,
                KafkaError.INVALID_CONFIG, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.TOPIC_EXCEPTION):  # fmt: skip
        return ChannelError(message)  # retrying will not help
    return ChannelUnavailable(message)


def _error_of(e: BaseException) -> KafkaError | None:
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0]
    return None


# --- producing ------------------------------------------------------------------------------------


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():  # cancelled by the caller's timeout, or already failed
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


class _Batch:
    """Turns N delivery callbacks (poll thread) into one future on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None], n: int):
        self.loop, self.fut, self.remaining, self.done = loop, fut, n, False

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if self.done:
            return
        if err is not None:
            self.finish(translate(err, "delivery failed"))
            return
        self.remaining -= 1
        if self.remaining == 0:
            self.finish(None)

    def finish(self, exc: BaseException | None) -> None:
        self.done = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self.loop.call_soon_threadsafe(_resolve, self.fut, exc)


class _Producer:
    """One librdkafka producer and the thread that serves its delivery callbacks."""

    def __init__(self, config: dict[str, Any], name: str) -> None:
        self.fatal = False
        self._producer = Producer({**config, "error_cb": self._on_error, "logger": rdlog})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():  # an idempotent producer that lost its state: replace it
            log.error("kafka producer fatal error: %s", err.str())
            self.fatal = True

    def send(
        self, topic: str, records: list[tuple[Any, Any, Any]], loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = loop.create_future()
        batch = _Batch(loop, fut, len(records))
        for key, headers, value in records:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=batch.on_delivery
                )
            except BufferError:
                batch.done = True
                _resolve(fut, ChannelUnavailable("kafka producer queue is full"))
                break
            except KafkaException as e:
                batch.done = True
                _resolve(fut, translate(_error_of(e), "produce failed"))
                break
        return fut

    def close(self, timeout: float) -> None:
        """Blocking: deliver what is queued (bounded), then stop the poll thread."""
        self._producer.flush(timeout)
        self._stop.set()
        self._thread.join(timeout)


class _Cluster:
    """Clients of one Kafka cluster: an admin client and a producer per durability level."""

    def __init__(self, bootstrap: str, settings: KafkaSettings) -> None:
        self.bootstrap = bootstrap
        self.settings = settings
        # Admin futures resolve on librdkafka's own thread; its logs would only queue (no poll),
        # so it logs nothing below critical.
        self.admin = AdminClient(
            {**_CLIENT_DEFAULTS, "bootstrap.servers": bootstrap, "log_level": 2}
        )
        self._producers: dict[str, _Producer] = {}  # by _PRODUCER_OF kind
        self._health: tuple[float, bool] = (0.0, False)

    def producer(self, level: contract.Durability) -> _Producer:
        kind = _PRODUCER_OF[level]
        p = self._producers.get(kind)
        if p is None or p.fatal:
            if p is not None:  # a fatal producer only fails: drop it off the loop
                threading.Thread(target=p.close, args=(0.0,), daemon=True).start()
            config = {
                **_CLIENT_DEFAULTS,
                "bootstrap.servers": self.bootstrap,
                "message.timeout.ms": int(self.settings.delivery_timeout * 1000),
                # 1 ms: a lone append waits ~1.5 ms instead of ~6 ms (librdkafka default 5),
                # and under load batches still fill while earlier requests are in flight.
                "linger.ms": 1,
                **_ACKS[kind],
                **dict(self.settings.producer_config),
            }
            p = self._producers[kind] = _Producer(config, f"kafka-producer-{kind}")
        return p

    def high_watermarks(self, topic: str, partitions: list[int]) -> dict[int, int]:
        """Blocking: the end offset of each partition (the admin client is safe on any thread,
        unlike calls on a consumer that its own thread is polling)."""
        timeout = self.settings.health_timeout * 5
        futures = self.admin.list_offsets(
            {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},  # type: ignore[no-untyped-call]
            request_timeout=timeout,
        )
        try:
            return {tp.partition: f.result(timeout + 1).offset for tp, f in futures.items()}
        except KafkaException as e:
            raise translate(_error_of(e), "kafka lag") from None
        except TimeoutError:
            raise ChannelUnavailable("kafka lag: end offsets timed out") from None

    def consumer_config(self, group: str, start_from: contract.StartFrom) -> dict[str, Any]:
        return {
            **_CLIENT_DEFAULTS,
            "bootstrap.servers": self.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": start_from.value,  # fallback only: on_assign sets positions
            # A member that died without leaving (kill -9, a lost pod) holds its partitions until
            # its session expires: Kafka's 45 s default would stall its restarted successor that
            # long. 10 s (the broker's floor is 6 s) trades that for a little heartbeat traffic.
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "logger": rdlog,
            **dict(self.settings.consumer_config),
        }

    async def healthy(self) -> bool:
        checked, ok = self._health
        if time.monotonic() - checked < self.settings.health_ttl:
            return ok
        try:
            await asyncio.to_thread(self.admin.list_topics, timeout=self.settings.health_timeout)
            ok = True
        except KafkaException:
            ok = False
        self._health = (time.monotonic(), ok)
        return ok

    def close(self) -> None:
        for p in self._producers.values():
            p.close(self.settings.delivery_timeout)
        self._producers.clear()


# --- consuming ------------------------------------------------------------------------------------


def _envelope_of(msg: Message) -> Envelope:
    given = msg.headers() or []
    headers = [
        (name, raw.encode() if isinstance(raw, str) else (raw or b""))
        for name, raw in (given.items() if isinstance(given, dict) else given)
    ]
    extra: dict[str, str] = {}
    for name, raw in headers:
        if name in (ARRIVAL_HEADER, TYPES_HEADER, "traceparent", "tracestate"):
            extra[name] = raw.decode("utf-8", "replace")
    try:
        arrival = float(extra[ARRIVAL_HEADER])
    except (KeyError, ValueError):  # written by someone else: the record's own timestamp
        arrival = msg.timestamp()[1] / 1000.0
    event = from_kafka(headers, msg.value())
    if TYPES_HEADER in extra:
        _retype(event.attributes, extra[TYPES_HEADER])
    return Envelope(
        event,
        arrival=arrival,
        traceparent=extra.get("traceparent"),
        tracestate=extra.get("tracestate"),
    )


def _types_of(attributes: dict[str, AttrValue]) -> bytes | None:
    typed = [f"{k}={_TYPE_CODES[type(v)]}" for k, v in attributes.items() if type(v) in _TYPE_CODES]
    return ",".join(typed).encode() if typed else None


def _retype(attributes: dict[str, AttrValue], spec: str) -> None:
    for item in spec.split(","):
        name, _, code = item.partition("=")
        value = attributes.get(name)
        if not isinstance(value, str):
            continue
        if code == "b" and value in ("true", "false"):
            attributes[name] = value == "true"
        elif code == "i" and value.lstrip("-").isdigit():
            attributes[name] = int(value)


class KafkaSubscription:
    """A trigger's consumer-group member. Every consumer call runs on its own thread (lag() asks
    the cluster's admin client); the event loop only touches the buffer and the commit map."""

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        start_from: contract.StartFrom,
        settings: KafkaSettings,
        watermarks: Callable[[str, list[int]], dict[int, int]],
        on_close: Callable[[KafkaSubscription], None],
    ) -> None:
        self._watermarks = watermarks
        self.group = str(config["group.id"])
        self.topic = topic
        self._config = config
        self._topic = topic
        self._start_from = start_from
        self._settings = settings
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._pin_ms = int(time.time() * 1000)  # a LATEST start: first record stamped from now
        self._lock = threading.Lock()
        self._buffer: deque[Record] = deque()
        self._positions: dict[int, int] = {}  # assigned partition -> next offset to commit
        self._pending: dict[int, int] = {}  # positions not yet sent to Kafka
        self._wake = asyncio.Event()
        self._assigned = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._paused = False
        self._thread = threading.Thread(target=self._run, name=f"kafka-{self.group}", daemon=True)
        self._thread.start()

    # --- the Subscription Protocol (event loop side) ------------------------------------------

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            self._wake.clear()
            got = self._take(max_records)
            left = deadline - time.monotonic()
            if got or left <= 0 or self._closed:
                return got
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return self._take(max_records)

    async def commit(self, partition: int, offset: int) -> None:
        with self._lock:
            if offset + 1 > self._positions.get(partition, offset + 1):
                self._positions[partition] = self._pending[partition] = offset + 1

    async def lag(self) -> int:
        await asyncio.to_thread(self._assigned.wait, self._settings.assignment_timeout)
        with self._lock:
            positions = dict(self._positions)
        if not positions:
            return 0
        highs = await asyncio.to_thread(self._watermarks, self._topic, list(positions))
        return sum(max(0, highs[p] - pos) for p, pos in positions.items())

    async def close(self) -> None:
        if self._closed:
            return
        if self._start_from is contract.StartFrom.LATEST:
            # The LATEST start is only pinned once partitions are assigned; closing before that
            # would let the next member start later and skip what arrived in between.
            await asyncio.to_thread(self._assigned.wait, self._settings.assignment_timeout)
        self._closed = True
        self._wake.set()
        self._stop.set()
        await asyncio.to_thread(self._thread.join, self._settings.admin_timeout + 5)
        self._on_close(self)

    # --- helpers ------------------------------------------------------------------------------

    def _take(self, n: int) -> list[Record]:
        with self._lock:
            return [self._buffer.popleft() for _ in range(min(n, len(self._buffer)))]

    def _notify(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(self._wake.set)

    # --- the consumer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._member()
            except Exception:  # a dead client, a bad config or a bug: a new member after a pause
                log.exception("kafka consumer %s failed; starting a new one", self.group)
                with self._lock:  # the new member re-reads from the committed offsets
                    self._buffer.clear()
                    self._positions.clear()
                    self._pending.clear()
                self._stop.wait(1.0)
        self._closed = True
        self._assigned.set()
        self._notify()

    def _member(self) -> None:
        """One consumer-group member, from joining until `_stop`; raises if the client fails."""
        consumer = Consumer(self._config)
        try:
            consumer.subscribe(
                [self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )  # fmt: skip
            last_commit = 0.0
            while not self._stop.is_set():
                self._flow_control(consumer)
                first = consumer.poll(0.2)
                if first is not None:
                    # poll returns at the first record; consume(…, 0) takes what else is there
                    self._accept([first, *consumer.consume(499, 0)])
                since = time.monotonic() - last_commit
                if self._pending and since >= self._settings.commit_interval:
                    self._commit(consumer, asynchronous=True)
                    last_commit = time.monotonic()
        finally:
            try:
                self._commit(consumer, asynchronous=False)
                consumer.close()  # also revokes (sync commit) and leaves the group
            except (KafkaException, RuntimeError) as e:
                log.warning("kafka consumer %s close: %s", self.group, e)

    def _accept(self, msgs: list[Message]) -> None:
        records: list[Record] = []
        for m in msgs:
            err, partition, offset = m.error(), m.partition(), m.offset()
            if err is not None or partition is None or offset is None:
                log.warning("kafka consumer %s: %s", self.group, err.str() if err else "no offset")
                continue
            try:
                env = _envelope_of(m)
            except EventError as e:
                log.warning(
                    "kafka %s: skipping record %d@%d: %s", self._topic, m.offset(), m.partition(), e
                )
                continue
            key = m.key()
            key_str = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
            records.append(Record(partition, offset, key_str, env))
        if records:
            with self._lock:
                self._buffer.extend(r for r in records if r.partition in self._positions)
            self._notify()

    def _flow_control(self, consumer: Consumer) -> None:
        size = len(self._buffer)
        if not self._paused and size >= self._settings.fetch_buffer:
            consumer.pause(consumer.assignment())
            self._paused = True
        elif self._paused and size <= self._settings.fetch_buffer // 2:
            consumer.resume(consumer.assignment())
            self._paused = False

    def _commit(
        self, consumer: Consumer, *, asynchronous: bool, only: set[int] | None = None
    ) -> None:
        with self._lock:
            todo = {p: o for p, o in self._pending.items() if only is None or p in only}
            for p in todo:
                del self._pending[p]
        if not todo:
            return
        offsets = [TopicPartition(self._topic, p, o) for p, o in todo.items()]
        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:  # the next commit carries a higher offset anyway
            log.warning("kafka consumer %s: commit failed: %s", self.group, e)

    def _start_positions(self, consumer: Consumer, partitions: list[TopicPartition]) -> list[int]:
        """Committed offsets, or the trigger's start (pinned by committing it right away)."""
        timeout = self._settings.admin_timeout
        committed = consumer.committed(partitions, timeout=timeout)
        starts = [tp.offset for tp in committed]
        missing = [i for i, o in enumerate(starts) if o < 0]
        if not missing:
            return starts
        if self._start_from is contract.StartFrom.LATEST:
            # The end first: a record written after this read is also after the pin time.
            ends = [consumer.get_watermark_offsets(partitions[i], timeout)[1] for i in missing]
            found = consumer.offsets_for_times(
                [
                    TopicPartition(self._topic, partitions[i].partition, self._pin_ms)
                    for i in missing
                ],
                timeout=timeout,
            )
            for i, end, tp in zip(missing, ends, found, strict=True):
                starts[i] = tp.offset if tp.offset >= 0 else end
        else:
            for i in missing:
                starts[i] = consumer.get_watermark_offsets(partitions[i], timeout)[0]
        consumer.commit(
            offsets=[
                TopicPartition(self._topic, partitions[i].partition, starts[i]) for i in missing
            ],
            asynchronous=False,
        )
        return starts

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A topic created a moment ago may have no partition leaders yet (NOT_LEADER_FOR_PARTITION):
        # retry rather than fall back to auto.offset.reset, which would resolve "latest" only at
        # the first fetch and so skip what was produced in between.
        deadline = time.monotonic() + self._settings.admin_timeout
        wait = 0.05
        while True:
            try:
                starts = self._start_positions(consumer, partitions)
                break
            except (KafkaException, TypeError) as e:  # TypeError: a watermark read timed out
                if time.monotonic() + wait < deadline:
                    time.sleep(wait)  # on the consumer's own thread, never the event loop
                    wait = min(wait * 2, 1.0)
                    continue
                log.warning(
                    "kafka consumer %s: start positions: %s; using auto.offset.reset", self.group, e
                )
                starts = [OFFSET_INVALID] * len(partitions)
                break
        with self._lock:
            for tp, start in zip(partitions, starts, strict=True):
                self._positions[tp.partition] = max(start, 0)
                self._pending.pop(tp.partition, None)
        self._paused = False
        consumer.assign(
            [
                TopicPartition(self._topic, tp.partition, s)
                for tp, s in zip(partitions, starts, strict=True)
            ]
        )
        self._assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit(consumer, asynchronous=False, only={tp.partition for tp in partitions})
        self._drop(consumer, partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop(consumer, partitions)  # someone else owns them already: nothing to commit

    def _drop(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        with self._lock:
            for p in gone:
                self._positions.pop(p, None)
                self._pending.pop(p, None)
            self._buffer = deque(r for r in self._buffer if r.partition not in gone)
        consumer.unassign()


# --- the channel ----------------------------------------------------------------------------------


class KafkaChannel:
    """The Channel Protocol over one or more Kafka clusters (chosen per broker's config)."""

    name = "kafka"

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._clusters: dict[str, _Cluster] = {}
        self._subs: set[KafkaSubscription] = set()
        self._groups: dict[str, set[str]] = {}  # topic -> consumer groups subscribed through us
        # A broker's channel config -> its cluster and topic spec: parsed once, not per append.
        self._specs: dict[tuple[tuple[str, str], ...], tuple[_Cluster, TopicSpec]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()  # clients are created lazily, per cluster

    async def close(self) -> None:
        # Together: each may wait (bounded) for a first assignment, and those waits overlap.
        await asyncio.gather(*(sub.close() for sub in list(self._subs)))
        clusters = list(self._clusters.values())
        self._clusters.clear()
        self._specs.clear()
        for c in clusters:
            await asyncio.to_thread(c.close)

    def _cluster(self, broker: contract.Broker) -> tuple[_Cluster, TopicSpec]:
        found = self._specs.get(broker.channel_config)
        if found is not None:
            return found
        spec = TopicSpec.parse(broker.channel_config, self._settings)
        cluster = self._clusters.get(spec.bootstrap)
        if cluster is None:
            cluster = self._clusters[spec.bootstrap] = _Cluster(spec.bootstrap, self._settings)
        if len(self._specs) < 10_000:  # configs come from the contract: a small, stable set
            self._specs[broker.channel_config] = (cluster, spec)
        return cluster, spec

    async def ensure_broker(self, broker: contract.Broker) -> None:
        if broker.external_topic:
            return
        cluster, spec = self._cluster(broker)
        topic = NewTopic(
            topic_of(broker), num_partitions=spec.partitions,
            replication_factor=spec.replication, config=dict(spec.config),
        )  # fmt: skip
        timeout = self._settings.admin_timeout
        futures = cluster.admin.create_topics(
            [topic], operation_timeout=timeout, request_timeout=timeout
        )
        try:
            await asyncio.to_thread(futures[topic.topic].result, timeout + 1)
        except KafkaException as e:
            err = _error_of(e)
            if err is None or err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise translate(err, f"create topic {topic.topic}") from None
        except TimeoutError:
            raise ChannelUnavailable(f"create topic {topic.topic}: timed out") from None
        await self._await_topic(cluster, topic.topic, present=True)

    async def delete_broker(self, broker: contract.Broker) -> None:
        cluster, _ = self._cluster(broker)
        topic = topic_of(broker)
        await asyncio.gather(*(s.close() for s in list(self._subs) if s.topic == topic))
        for group in self._groups.pop(topic, set()):
            await self._delete_group(cluster, group)
        if broker.external_topic:
            return
        timeout = self._settings.admin_timeout
        futures = cluster.admin.delete_topics([topic], operation_timeout=timeout)
        try:
            await asyncio.to_thread(futures[topic].result, timeout + 1)
        except KafkaException as e:
            err = _error_of(e)
            if err is None or err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise translate(err, f"delete topic {topic}") from None
        except TimeoutError:
            raise ChannelUnavailable(f"delete topic {topic}: timed out") from None
        # Deletion completes asynchronously; a broker re-created at once must get a new topic.
        await self._await_topic(cluster, topic, present=False)

    async def _await_topic(self, cluster: _Cluster, topic: str, *, present: bool) -> None:
        """Until the cluster's metadata (not just the controller) agrees the topic is there/gone."""
        timeout = self._settings.admin_timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                meta = await asyncio.to_thread(cluster.admin.list_topics, topic, timeout)
            except KafkaException as e:
                raise translate(_error_of(e), f"metadata of {topic}") from None
            info = meta.topics.get(topic)
            if bool(info is not None and info.error is None and info.partitions) == present:
                return
            if time.monotonic() > deadline:
                state = "listed" if present else "gone"
                raise ChannelUnavailable(f"topic {topic}: not {state} after {timeout:.0f}s")
            await asyncio.sleep(0.05)

    async def append(
        self,
        broker: contract.Broker,
        envelopes: Sequence[Envelope],
        durability: contract.Durability,
    ) -> None:
        if not envelopes:
            return
        cluster, _ = self._cluster(broker)
        records = []
        for env in envelopes:
            key, headers, value = to_kafka(env.event)
            extra: list[tuple[str, bytes]] = [(ARRIVAL_HEADER, repr(env.arrival).encode())]
            if env.traceparent:
                extra.append(("traceparent", env.traceparent.encode()))
            if env.tracestate:
                extra.append(("tracestate", env.tracestate.encode()))
            types = _types_of(env.event.attributes)
            if types:
                extra.append((TYPES_HEADER, types))
            records.append((key, headers + extra, value))
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut = cluster.producer(durability).send(topic_of(broker), records, loop)
        # librdkafka fails a message after message.timeout.ms; this timer is the net under it
        # (a timer, not wait_for: no extra future and no getpid() per append).
        net = loop.call_later(
            self._settings.delivery_timeout + 2.0,
            _resolve,
            fut,
            ChannelUnavailable("kafka: no delivery report in time"),
        )
        try:
            await fut
        finally:
            net.cancel()

    def subscribe(self, broker: contract.Broker, trigger: contract.Trigger) -> KafkaSubscription:
        cluster, _ = self._cluster(broker)
        topic, group = topic_of(broker), group_of(trigger)
        sub = KafkaSubscription(
            cluster.consumer_config(group, trigger.start_from), topic, trigger.start_from,
            self._settings, cluster.high_watermarks, self._subs.discard,
        )  # fmt: skip
        self._subs.add(sub)
        self._groups.setdefault(topic, set()).add(group)
        return sub

    async def delete_subscription(self, broker: contract.Broker, trigger: contract.Trigger) -> None:
        cluster, _ = self._cluster(broker)
        group = group_of(trigger)
        for sub in [s for s in self._subs if s.group == group]:
            await sub.close()
        self._groups.get(topic_of(broker), set()).discard(group)
        await self._delete_group(cluster, group)

    async def _delete_group(self, cluster: _Cluster, group: str) -> None:
        """Delete a consumer group; members elsewhere may take a moment to leave (bounded)."""
        deadline = time.monotonic() + self._settings.admin_timeout
        while True:
            futures = cluster.admin.delete_consumer_groups(
                [group], request_timeout=self._settings.admin_timeout
            )
            try:
                await asyncio.to_thread(futures[group].result, self._settings.admin_timeout + 1)
                return
            except KafkaException as e:
                err = _error_of(e)
                code = err.code() if err else None
                if code == KafkaError.GROUP_ID_NOT_FOUND:
                    return
                if code != KafkaError.NON_EMPTY_GROUP or time.monotonic() > deadline:
                    log.warning("kafka: cannot delete consumer group %s: %s", group, e)
                    return
            except TimeoutError:
                log.warning("kafka: deleting consumer group %s timed out", group)
                return
            await asyncio.sleep(0.2)

    async def healthy(self) -> bool:
        if not self._clusters:
            if not self._settings.bootstrap:
                return True  # no Kafka configured, none in use
            self._clusters[self._settings.bootstrap] = _Cluster(
                self._settings.bootstrap, self._settings
            )
        results = [await c.healthy() for c in list(self._clusters.values())]
        return all(results)
