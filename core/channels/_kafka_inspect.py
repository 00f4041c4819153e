"""Reading a broker's Kafka topic without being a Trigger: its last N events, and a live tail.

Both use a consumer that never joins a group: partitions are `assign()`ed at explicit offsets
(the last N before each partition's end, or the end itself for a tail), offsets are never
committed, and the group id is a throwaway that the cluster never records (no join, no commit).
So looking at a broker leaves no consumer group behind and moves no Trigger's position.

A tail's consumer runs on its own thread (a librdkafka consumer is polled from one thread) and
stops reading while its small buffer is full; the console's per-viewer buffer (core/tailbuffer)
decides what a slow viewer misses.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from kbroker.core.channel import ChannelUnavailable, Record
from kbroker.core.channels import _kafka_records as records
from kbroker.core.channels._kafka_admin import CLIENT_DEFAULTS, error_of, log, rdlog, translate
from kbroker.core.events import EventError
from kbroker.core.settings import KafkaSettings

BUFFER = 1000  # records a tail's thread holds before it stops reading
RECENT_TIMEOUT = 10.0  # seconds reading the last N may take at most


def config(bootstrap: str, settings: KafkaSettings) -> dict[str, Any]:
    return {
        **CLIENT_DEFAULTS,
        "bootstrap.servers": bootstrap,
        "logger": rdlog,
        **dict(settings.consumer_config),
        # After the user's settings: these make the consumer leave no trace.
        "group.id": f"kbroker-inspect-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
    }


def _partitions(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    meta = consumer.list_topics(topic, timeout=timeout)
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        raise ChannelUnavailable(f"kafka: topic {topic} not found")
    return sorted(found.partitions)


def _decode(msg: Message) -> Record | None:
    try:
        env = records.decode(msg.headers(), msg.value(), msg.timestamp()[1])
    except EventError as exc:
        log.info(
            "kafka inspect: record %s/%s is not a CloudEvent: %s",
            msg.partition(),
            msg.offset(),
            exc,
        )
        return None
    return Record(msg.partition() or 0, msg.offset() or 0, records.key_of(msg.key()), env)


def read_recent(bootstrap: str, settings: KafkaSettings, topic: str, limit: int) -> list[Record]:
    """Blocking: the last `limit` records across the topic's partitions, oldest first (by arrival,
    then partition and offset)."""
    timeout = settings.admin_timeout
    consumer = Consumer(config(bootstrap, settings))
    try:
        ends: dict[int, int] = {}
        assign: list[TopicPartition] = []
        for p in _partitions(consumer, topic, timeout):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout)
            if high > low:
                start = max(low, high - limit)
                ends[p] = high
                assign.append(TopicPartition(topic, p, start))
        if not assign:
            return []
        consumer.assign(assign)
        found: list[Record] = []
        deadline = time.monotonic() + RECENT_TIMEOUT
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                err = msg.error()
                p = msg.partition() or 0
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        ends.pop(p, None)
                        continue
                    raise translate(err, "kafka recent")
                if (msg.offset() or 0) + 1 >= ends.get(p, 0):
                    ends.pop(p, None)
                record = _decode(msg)
                if record is not None:
                    found.append(record)
        found.sort(key=lambda r: (r.envelope.arrival, r.partition, r.offset))
        return found[-limit:]
    except KafkaException as e:
        raise translate(error_of(e), "kafka recent") from None
    finally:
        consumer.close()


class KafkaTail:
    """A group-less consumer assigned at each partition's end; closing it leaves nothing."""

    def __init__(self, bootstrap: str, settings: KafkaSettings, topic: str) -> None:
        self._settings = settings
        self._topic = topic
        self._consumer = Consumer(config(bootstrap, settings))
        self._buffer: deque[Record] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._room = threading.Event()
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @classmethod
    async def open(cls, bootstrap: str, settings: KafkaSettings, topic: str) -> KafkaTail:
        tail = cls(bootstrap, settings, topic)
        try:
            await asyncio.to_thread(tail._assign_end)
        except BaseException:
            await asyncio.to_thread(tail._consumer.close)
            raise
        tail._thread = threading.Thread(target=tail._run, name=f"kafka-tail-{topic}", daemon=True)
        tail._thread.start()
        return tail

    def _assign_end(self) -> None:
        timeout = self._settings.admin_timeout
        try:
            assign = []
            for p in _partitions(self._consumer, self._topic, timeout):
                high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), timeout
                )[1]
                assign.append(TopicPartition(self._topic, p, high))
            self._consumer.assign(assign)
        except KafkaException as e:
            raise translate(error_of(e), "kafka tail") from None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if len(self._buffer) >= BUFFER:
                    self._room.wait(0.1)
                    self._room.clear()
                    continue
                got: list[Record] = []
                for msg in self._consumer.consume(500, 0.2):
                    err = msg.error()
                    if err is None:
                        record = _decode(msg)
                        if record is not None:
                            got.append(record)
                    elif err.code() != KafkaError._PARTITION_EOF:
                        log.warning("kafka tail on %s: %s", self._topic, err.str())
                if got:
                    with self._lock:
                        self._buffer.extend(got)
                    self._loop.call_soon_threadsafe(self._wake.set)
        except Exception as exc:  # surfaced by the next fetch
            self._failure = exc
            self._loop.call_soon_threadsafe(self._wake.set)
        finally:
            self._consumer.close()

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            self._wake.clear()
            with self._lock:
                n = min(max_records, len(self._buffer))
                got = [self._buffer.popleft() for _ in range(n)]
            if got:
                self._room.set()
                return got
            if self._failure is not None:
                raise ChannelUnavailable(f"kafka tail on {self._topic}: {self._failure}")
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                return []
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return []

    async def close(self) -> None:
        self._stop.set()
        self._room.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
