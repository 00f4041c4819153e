"""Watching a broker's RabbitMQ exchange without being a Trigger: a live tail, and no history.

A RabbitMQ exchange stores nothing: each Trigger's queue holds only what that Trigger has not
consumed yet, so there is no log to read the last N events from, and `recent` says so (None)
rather than showing a queue's backlog as if it were history.

A tail is a server-named, exclusive, auto-delete queue bound to the broker's exchange on an AMQP
channel of its own. It is bounded on the server (`x-max-length`, oldest dropped) and on the client
(the prefetch: messages are acknowledged as the viewer takes them). Closing the tail deletes the
queue; if the process dies the server deletes it with the connection (exclusive).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from aiormq.abc import AbstractChannel, DeliveredMessage
from kbroker.core.channel import Record
from kbroker.core.channels import _rabbitmq_records as records
from kbroker.core.channels._rabbitmq_link import Link, log
from kbroker.core.events import EventError

BUFFER = 1000  # messages the tail's queue keeps (oldest dropped) and the client holds unacked


class RabbitTail:
    def __init__(self, link: Link, channel: AbstractChannel) -> None:
        self._link = link
        self._ch: AbstractChannel | None = channel
        self.queue = ""
        self._buffer: deque[tuple[int, Record | None]] = deque()
        self._wake = asyncio.Event()
        self._count = 0

    @classmethod
    async def open(cls, link: Link, exchange: str) -> RabbitTail:
        ch = await link.open_channel()
        tail = cls(link, ch)
        try:
            ok = await link.call(
                "declare tail queue",
                ch.queue_declare(
                    "",
                    exclusive=True,
                    auto_delete=True,
                    arguments={"x-max-length": BUFFER, "x-overflow": "drop-head"},
                ),
            )
            tail.queue = str(ok.queue)
            await link.call("bind tail queue", ch.queue_bind(tail.queue, exchange))
            await link.call("qos", ch.basic_qos(prefetch_count=BUFFER))
            await link.call("consume", ch.basic_consume(tail.queue, tail._on_message))
        except BaseException:
            await tail.close()
            raise
        return tail

    async def _on_message(self, message: DeliveredMessage) -> None:
        tag = int(message.delivery_tag or 0)
        props = message.header.properties
        try:
            env = records.decode(props.headers, props.content_type, message.body, props.timestamp)
        except EventError as exc:
            log.info(
                "tail of %s: a message that is not a CloudEvent, not shown: %s", self.queue, exc
            )
            env = None
        self._count += 1
        record = None
        if env is not None:
            key = env.event.attributes.get("partitionkey")
            record = Record(0, self._count, None if key is None else str(key), env)
        self._buffer.append((tag, record))  # a skipped message is still acknowledged
        self._wake.set()

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        deadline = time.monotonic() + timeout
        while not self._buffer and self._ch is not None and not self._ch.is_closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(left, 0.5))
        out: list[Record] = []
        last_tag = 0
        while self._buffer and len(out) < max_records:
            tag, record = self._buffer.popleft()
            last_tag = tag
            if record is not None:
                out.append(record)
        ch = self._ch
        if last_tag and ch is not None and not ch.is_closed:
            await self._link.call("ack", ch.basic_ack(last_tag, multiple=True))
        return out

    async def close(self) -> None:
        ch, self._ch = self._ch, None
        if ch is None or ch.is_closed:
            return
        with contextlib.suppress(Exception):
            if self.queue:
                await asyncio.wait_for(ch.queue_delete(self.queue), self._link.settings.op_timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ch.close(), self._link.settings.op_timeout)
