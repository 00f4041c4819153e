"""A trigger's reading position in a broker's stream: one durable JetStream pull consumer.

Why it exists: the dispatcher thinks in Kafka terms (fetch records with increasing offsets, later
commit "everything up to offset N has an outcome"), and JetStream thinks in messages acknowledged
one by one (AckExplicit). This module maps one onto the other:

- `fetch` pulls from the consumer and numbers what it returns 1, 2, 3, ... (the `Record.offset`,
  local to this subscription), holding each message until it is committed. A held message that
  JetStream redelivers (its AckWait ran out while the dispatcher was still retrying it) is not
  returned twice.
- `commit(0, N)` acknowledges every held message numbered up to N, the last one with a
  synchronous ack, so once commit returns the server has recorded them all. Acknowledged messages
  are never redelivered; everything else is, so a crash replays rather than skips: after a
  `kill -9` JetStream redelivers the un-acked messages once their AckWait (10 s by default)
  expires; after a clean `close` they are NAKed and come back at once.
- Offsets are per subscription, not stream sequences, because redelivered messages arrive after
  newer ones and the dispatcher needs offsets that only increase.

The consumer is durable (`knative-trigger-<ns>-<name>`), created on first use with DeliverPolicy
All for `kbroker.dev/start-from: earliest` and, for latest, starting right after the last message
this process stored (or the stream's end), and never recreated while it exists: its position
survives restarts. Messages that are no CloudEvent are terminated (never redelivered) and skipped.

What it refuses to do: return a message twice while it is held, acknowledge what was not
committed, or wait without a bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Callable

import nats.js.errors
from kbroker.core import contract
from kbroker.core.channel import ChannelUnavailable, Record
from kbroker.core.channels import _nats_records
from kbroker.core.channels._nats_client import Connection, translate
from kbroker.core.events import EventError
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSub
from nats.js import api

log = logging.getLogger(__name__)

_RECENT = 100_000  # acknowledged stream sequences remembered, to re-ack a late redelivery


class NatsSubscription:
    """The Subscription Protocol over one durable pull consumer."""

    def __init__(
        self,
        conn: Connection,
        stream: str,
        consumer: str,
        start_from: contract.StartFrom,
        start_seq: int | None,
        on_close: Callable[[NatsSubscription], None],
    ) -> None:
        self.stream = stream
        self.consumer = consumer
        self._conn = conn
        self._start_from = start_from
        self._start_seq = start_seq  # latest: first sequence to deliver, when already known
        self._on_close = on_close
        self._sub: NatsSub | None = None
        self._inbox = ""
        self._requests = 0
        self._inbound: collections.deque[Msg] = collections.deque()
        self._arrived = asyncio.Event()
        self._statuses: set[int] = set()  # requests the server ended (404/408/409)
        self._next_offset = 0
        self._held: dict[int, Msg] = {}  # stream seq -> latest delivery of a held message
        self._offsets: collections.OrderedDict[int, int] = collections.OrderedDict()  # off -> seq
        self._recent: collections.deque[int] = collections.deque(maxlen=_RECENT)
        self._recent_set: set[int] = set()
        self._closed = False
        self._lock = asyncio.Lock()
        # Created now, not on the first fetch: pins a latest trigger's start as early as possible.
        self._setup: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._create())

    # -- set-up --------------------------------------------------------------------------------
    async def _create(self) -> None:
        try:
            jsm = await self._conn.jsm()
            try:
                await jsm.consumer_info(self.stream, self.consumer)
            except nats.js.errors.NotFoundError:
                await jsm.add_consumer(self.stream, self._config(await self._latest_seq()))
            nc = await self._conn.client()
            self._inbox = nc.new_inbox()
            self._sub = await nc.subscribe(self._inbox + ".*", cb=self._receive)
        except Exception as exc:
            raise translate(exc, f"consumer {self.consumer}") from None

    async def _latest_seq(self) -> int | None:
        if self._start_from is contract.StartFrom.EARLIEST:
            return None
        if self._start_seq is not None:
            return self._start_seq
        info = await (await self._conn.jsm()).stream_info(self.stream)
        return (info.state.last_seq or 0) + 1

    def _config(self, start_seq: int | None) -> api.ConsumerConfig:
        by_seq = start_seq is not None
        return api.ConsumerConfig(
            durable_name=self.consumer,
            deliver_policy=(
                api.DeliverPolicy.BY_START_SEQUENCE if by_seq else api.DeliverPolicy.ALL
            ),
            opt_start_seq=start_seq,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._conn.settings.ack_wait,
            max_deliver=-1,  # JetStream must never give up on an event: the dispatcher decides
            max_ack_pending=self._conn.settings.max_ack_pending,
            replay_policy=api.ReplayPolicy.INSTANT,
        )

    async def _ready(self) -> None:
        if self._closed:
            raise ChannelUnavailable(f"nats: consumer {self.consumer}: subscription closed")
        if self._setup.done() and self._setup.exception() is not None:
            self._setup = asyncio.get_running_loop().create_task(self._create())  # retry
        await asyncio.shield(self._setup)

    async def _receive(self, msg: Msg) -> None:
        status = (msg.headers or {}).get("Status")
        if status is not None and not msg.data:
            if status != "100":  # 404 no messages, 408 expired, 409 consumer gone: request over
                with contextlib.suppress(ValueError):
                    self._statuses.add(int(msg.subject.rsplit(".", 1)[-1]))
        else:
            self._inbound.append(msg)
        self._arrived.set()

    # -- Subscription Protocol -----------------------------------------------------------------
    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        async with self._lock:
            await self._ready()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(0.0, timeout)
            out = self._take(max_records)
            if out:
                return out
            # What is there now (no_wait), then, if nothing, wait for the first message.
            await self._pull({"batch": max_records, "no_wait": True}, loop.time() + 2.0)
            out = self._take(max_records)
            left = deadline - loop.time()
            if out or left <= 0.005 or self._closed:
                return out
            expires = int(max(0.001, left - 0.002) * 1e9)
            await self._pull({"batch": 1, "expires": expires}, deadline)
            return self._take(max_records)

    async def _pull(self, request: dict[str, object], until: float) -> None:
        """Send one pull request; return when it delivered something, ended, or at `until`."""
        nc = await self._conn.client()
        if not nc.is_connected:
            raise ChannelUnavailable(f"nats: consumer {self.consumer}: not connected")
        self._requests += 1
        rid = self._requests
        self._statuses.clear()  # endings of earlier requests, late: nobody waits for them now
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}"
        try:
            await nc.publish(subject, json.dumps(request).encode(), reply=f"{self._inbox}.{rid}")
        except Exception as exc:
            raise translate(exc, f"fetch from {self.consumer}") from None
        loop = asyncio.get_running_loop()
        while not self._closed and rid not in self._statuses:
            if self._inbound and request.get("no_wait") is None:
                break  # a waiting request: the first message is enough
            if len(self._inbound) >= int(str(request["batch"])):
                break
            left = until - loop.time()
            if left <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        self._statuses.discard(rid)

    def _take(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        while self._inbound and len(out) < max_records:
            msg = self._inbound.popleft()
            record = self._accept(msg)
            if record is not None:
                out.append(record)
        return out

    def _accept(self, msg: Msg) -> Record | None:
        try:
            meta = msg.metadata
        except Exception:  # not a JetStream delivery (a stray reply): nothing to do with it
            return None
        seq = meta.sequence.stream
        if seq in self._held:
            self._held[seq] = msg  # redelivered while the dispatcher still has it
            return None
        if seq in self._recent_set:  # acknowledged already; that ack must have been lost
            self._ack_later(msg)
            return None
        try:
            env = _nats_records.decode(msg.headers, msg.data, meta.timestamp.timestamp())
        except EventError as exc:
            log.warning("stream %s seq %d: not a CloudEvent, skipped: %s", self.stream, seq, exc)
            self._ack_later(msg, b"+TERM")
            return None
        self._next_offset += 1
        self._held[seq] = msg
        self._offsets[self._next_offset] = seq
        return Record(0, self._next_offset, _nats_records.key_of(env), env)

    def _ack_later(self, msg: Msg, body: bytes = b"+ACK") -> None:
        if self._conn.connected and msg.reply:
            asyncio.get_running_loop().create_task(self._publish_quietly(msg.reply, body))

    async def _publish_quietly(self, subject: str, body: bytes) -> None:
        with contextlib.suppress(Exception):
            await (await self._conn.client()).publish(subject, body)

    async def commit(self, partition: int, offset: int) -> None:
        if partition != 0:
            raise ValueError(f"nats channel has partition 0 only, not {partition}")
        done: list[Msg] = []
        while self._offsets:
            first = next(iter(self._offsets))
            if first > offset:
                break
            seq = self._offsets.pop(first)
            msg = self._held.pop(seq, None)
            if msg is not None:
                done.append(msg)
                self._remember(seq)
        if not done:
            return
        try:
            nc = await self._conn.client()
            for msg in done[:-1]:
                await nc.publish(msg.reply, b"+ACK")
            # A double ack: its answer means the server has processed it, and the acks before it
            # (same connection, same consumer) too.
            await nc.request(done[-1].reply, b"+ACK", timeout=self._conn.settings.api_timeout)
        except Exception as exc:
            # Kept as committed here: a redelivery of any of them is acknowledged again on sight.
            raise translate(exc, f"commit to {self.consumer}") from None

    def _remember(self, seq: int) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(seq)
        self._recent_set.add(seq)

    async def lag(self) -> int:
        await self._ready()
        try:
            info = await (await self._conn.jsm()).consumer_info(self.stream, self.consumer)
        except Exception as exc:
            raise translate(exc, f"consumer info {self.consumer}") from None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._arrived.set()
        self._on_close(self)
        held = list(self._held.values()) + list(self._inbound)
        self._held.clear()
        self._inbound.clear()
        if not self._setup.done():
            self._setup.cancel()
        with contextlib.suppress(BaseException):
            await self._setup
        if not self._conn.connected:
            return
        with contextlib.suppress(Exception):
            nc = await self._conn.client()
            # Uncommitted messages go back at once rather than after AckWait.
            for msg in held:
                if msg.reply:
                    await nc.publish(msg.reply, b"-NAK")
            if self._sub is not None:
                await self._sub.unsubscribe()
            await nc.flush(timeout=2)
