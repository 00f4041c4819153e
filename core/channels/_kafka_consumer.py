"""The Kafka channel's consuming side: a trigger's consumer-group member on its own thread.

Why it exists: a librdkafka consumer must be polled from one thread, all the time (heartbeats,
rebalances), while the dispatcher fetches and commits from the event loop. This module keeps the
two apart:

    Subscription: Consumer thread --poll/consume--> decoded Records in a bounded buffer --> fetch()
                  commit() only records the offset; the thread commits asynchronously, and
                  synchronously on revoke and close.

Decisions worth knowing:
- A LATEST trigger starts at the first record stamped at or after `subscribe()` (offsets_for_times),
  and that start is committed as soon as partitions are assigned, so a restart before the first
  commit skips nothing. `close()` waits (bounded) for that first assignment.
- `lag()` counts the partitions this member holds: members of one group add up, never overlap.
- A commit for a partition this member no longer holds is dropped: the new owner re-reads from the
  committed position (at-least-once, like any Kafka consumer).
- A record that is not a CloudEvent is logged and skipped; a later commit moves past it.

What it refuses to do: call the consumer from the event loop (lag() asks the cluster's admin client
instead), buffer without a bound (reading stops at `fetch_buffer` records), or wait for the first
assignment without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, Message, TopicPartition
from kbroker.core import contract
from kbroker.core.channel import Record
from kbroker.core.channels import _kafka_records as records
from kbroker.core.channels._kafka_admin import CLIENT_DEFAULTS, log, rdlog
from kbroker.core.events import EventError
from kbroker.core.settings import KafkaSettings


def consumer_config(
    bootstrap: str, group: str, start_from: contract.StartFrom, settings: KafkaSettings
) -> dict[str, Any]:
    """The librdkafka configuration of a trigger's group member."""
    return {
        **CLIENT_DEFAULTS,
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": start_from.value,  # fallback only: on_assign sets positions
        # A member that died without leaving (kill -9, a lost pod) holds its partitions until
        # its session expires: Kafka's 45 s default would stall its restarted successor that
        # long. 10 s (the broker's floor is 6 s) trades that for a little heartbeat traffic.
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "logger": rdlog,
        **dict(settings.consumer_config),
    }


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
        self._holding = False  # the buffer filled up: not reading until it is half empty
        self._full_since = 0.0
        self._room = threading.Event()  # set by the event loop when the buffer is half empty
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
            got = [self._buffer.popleft() for _ in range(min(n, len(self._buffer)))]
            room = len(self._buffer) <= self._settings.fetch_buffer // 2
        if got and room:
            self._room.set()
        return got

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
                if self._flow_control(consumer):
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
        got: list[Record] = []
        for m in msgs:
            err, partition, offset = m.error(), m.partition(), m.offset()
            if err is not None or partition is None or offset is None:
                log.warning("kafka consumer %s: %s", self.group, err.str() if err else "no offset")
                continue
            try:
                env = records.decode(m.headers(), m.value(), m.timestamp()[1])
            except EventError as e:
                log.warning(
                    "kafka %s: skipping record %d@%d: %s", self._topic, m.offset(), m.partition(), e
                )
                continue
            got.append(Record(partition, offset, records.key_of(m.key()), env))
        if got:
            with self._lock:
                self._buffer.extend(r for r in got if r.partition in self._positions)
            self._notify()

    def _flow_control(self, consumer: Consumer) -> bool:
        """True: read records now. False: the buffer is full; this waited for room instead.

        A full buffer only stops the reading: librdkafka keeps prefetching into its own bounded
        queue (queued.max.messages.kbytes), so records are at hand the moment the buffer has room.
        pause() would purge that queue and refetch after resume() (and the paused poll slept its
        whole timeout before it saw the room): work thrown away and a gap in each cycle.
        Partitions are only paused when the buffer stays full for `pause_after` (a stuck
        subscriber): polling without records then keeps serving the group (rebalances,
        max.poll.interval.ms)."""
        size = len(self._buffer)
        if self._holding and size <= self._settings.fetch_buffer // 2:
            self._holding = False
            if self._paused:
                consumer.resume(consumer.assignment())
                self._paused = False
        elif not self._holding and size >= self._settings.fetch_buffer:
            self._holding = True
            self._full_since = time.monotonic()
        if not self._holding:
            return True
        self._room.clear()
        if not self._paused and time.monotonic() - self._full_since >= self._settings.pause_after:
            consumer.pause(consumer.assignment())
            self._paused = True
        if self._paused:
            msg = consumer.poll(0)  # rebalance callbacks and errors; a paused partition gives none
            if msg is not None:
                self._accept([msg])
        if len(self._buffer) > self._settings.fetch_buffer // 2:
            self._room.wait(0.1)
        return False

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
        self._paused = self._holding = False
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
