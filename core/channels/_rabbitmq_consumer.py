"""The RabbitMQ channel's consuming side: a trigger's queue consumer, with positions mapped onto
delivery tags.

Why it exists: a RabbitMQ queue has no offsets, while the Channel Protocol speaks of positions and
contiguous commits. The mapping used here:

- A subscription consumes its queue on an AMQP channel of its own, manual acks, prefetch = the
  trigger's in-flight bound. A record's offset is `base + delivery tag`: tags rise by one per
  delivery on a channel, so offsets rise too; `base` moves past every offset handed out whenever a
  new AMQP channel starts (tags restart at 1 there).
- `commit(0, offset)` is `basic.ack(tag, multiple=True)`: everything up to it is done, which is
  exactly the Protocol's meaning. A commit for an offset of an earlier AMQP channel is dropped:
  the server requeued that channel's unacked messages when it closed, so they come again (at least
  once; a crash replays, never skips).
- `lag()` is the queue's ready count plus what this subscription holds unacked.
- One queue is one partition (0); the server hands messages out in queue order, and the dispatcher
  keeps per-key order inside what it fetched. A redelivery after a lost connection may put a
  message behind newer ones: order per key holds while a connection lives.

What it refuses to do: ack anything not handed out by `fetch`, buffer past the prefetch bound (the
server stops sending), or wait without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable

from aiormq.abc import AbstractChannel, DeliveredMessage
from kbroker.core.channel import ChannelError, Record
from kbroker.core.channels import _rabbitmq_records as records
from kbroker.core.channels._rabbitmq_link import Link, log
from kbroker.core.events import EventError


class RabbitSubscription:
    """A trigger's consumer of its own queue."""

    def __init__(
        self,
        link: Link,
        queue: str,
        prefetch: int,
        declare: Callable[[], Awaitable[None]],
        on_close: Callable[[RabbitSubscription], None],
    ) -> None:
        self.link = link
        self.queue = queue
        self._prefetch = max(1, min(prefetch, 65535))
        self._declare = declare
        self._on_close = on_close
        # Started at subscribe: the queue must exist before an append that follows it.
        self.ready: asyncio.Future[None] = asyncio.ensure_future(declare())
        self.ready.add_done_callback(_ignore_failure)
        self._ch: AbstractChannel | None = None
        self._buffer: deque[Record] = deque()
        self._wake = asyncio.Event()
        self._base = 0  # offset of delivery tag 0 on the current AMQP channel
        self._received = 0  # highest offset delivered
        self._acked = 0  # highest offset acknowledged on the current AMQP channel
        self._closed = False

    async def _consumer(self) -> AbstractChannel:
        ch = self._ch
        if ch is not None and not ch.is_closed:
            return ch
        if not self.ready.done() or self.ready.exception() is not None:
            with contextlib.suppress(ChannelError):
                await self.ready
        if self.ready.exception() is not None or ch is not None:  # declare again after a loss
            await self._declare()
        ch = await self.link.open_channel()
        # Tags restart at 1 on a new AMQP channel; the old one's unacked messages are requeued.
        self._base = self._acked = self._received
        self._buffer.clear()
        await self.link.call("qos", ch.basic_qos(prefetch_count=self._prefetch))
        await self.link.call("consume", ch.basic_consume(self.queue, self._on_message))
        self._ch = ch
        return ch

    async def _on_message(self, message: DeliveredMessage) -> None:
        tag = int(message.delivery_tag or 0)
        offset = self._base + tag
        props = message.header.properties
        try:
            env = records.decode(props.headers, props.content_type, message.body, props.timestamp)
        except EventError as exc:
            # Not a CloudEvent: acked alone, now, so no later commit waits for it.
            log.warning("queue %s: skipped a message that is not a CloudEvent: %s", self.queue, exc)
            self._received = offset
            if message.channel is not None and not message.channel.is_closed:
                with contextlib.suppress(Exception):
                    await message.channel.basic_ack(tag)
            return
        key = env.event.attributes.get("partitionkey")
        self._received = offset
        self._buffer.append(Record(0, offset, None if key is None else str(key), env))
        self._wake.set()

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        if self._closed:
            return []
        ch = await self._consumer()
        deadline = time.monotonic() + timeout
        while not self._buffer and not ch.is_closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.clear()
            # In slices: a consumer channel lost meanwhile is noticed, then reopened next fetch.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(left, 0.5))
        out: list[Record] = []
        while self._buffer and len(out) < max_records:
            out.append(self._buffer.popleft())
        return out

    async def commit(self, partition: int, offset: int) -> None:
        ch = self._ch
        if offset <= self._acked or offset <= self._base or ch is None or ch.is_closed:
            return  # already acked, or handed out on an AMQP channel that is gone
        offset = min(offset, self._received)
        await self.link.call("ack", ch.basic_ack(offset - self._base, multiple=True))
        self._acked = offset

    async def lag(self) -> int:
        with contextlib.suppress(ChannelError):
            await self.ready
        admin = await self.link.channel("admin")
        ok = await self.link.call("lag", admin.queue_declare(self.queue, passive=True))
        return int(ok.message_count or 0) + max(0, self._received - self._acked)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        ch, self._ch = self._ch, None
        if not self.ready.done():
            self.ready.cancel()
        if ch is not None and not ch.is_closed:
            # Closing the AMQP channel returns its unacked messages to the queue.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ch.close(), self.link.settings.op_timeout)


def _ignore_failure(fut: asyncio.Future[None]) -> None:
    # A failed declare is retried by the first fetch; reading the exception keeps asyncio quiet.
    if not fut.cancelled():
        fut.exception()
