"""Reading a broker's JetStream stream without being a Trigger: its last N events, and a tail.

History is read by direct get of each stored sequence (no consumer at all). A tail is an
ephemeral pull consumer (no durable name, no acks, in memory) starting at the messages stored
after it was created; closing the tail deletes it, and if this process dies first JetStream
removes it after INACTIVE seconds without a pull. So looking at a broker leaves no consumer behind
and moves no Trigger's position. Pulling (not push) keeps what is buffered bounded by a fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import nats.errors
import nats.js.errors
from kbroker.core.channel import ChannelUnavailable, Record
from kbroker.core.channels import _nats_records
from kbroker.core.channels._nats_client import Connection, log, translate
from kbroker.core.events import EventError
from nats.js import api

INACTIVE = 30.0  # seconds without a pull after which JetStream deletes an abandoned tail consumer
PARALLEL = 16  # direct gets in flight while reading history


def _record(
    stream: str, seq: int, headers: dict[str, str] | None, data: bytes, at: float
) -> Record | None:
    try:
        env = _nats_records.decode(headers, data, at)
    except EventError as exc:
        log.info("stream %s seq %d: not a CloudEvent, not shown: %s", stream, seq, exc)
        return None
    return Record(0, seq, _nats_records.key_of(env), env)


async def recent(conn: Connection, stream: str, limit: int) -> list[Record]:
    """The last `limit` messages of the stream, oldest first (offset = stream sequence)."""
    try:
        jsm = await conn.jsm()
        state = (await jsm.stream_info(stream)).state
    except Exception as exc:
        raise translate(exc, f"stream {stream}") from None
    last, first = state.last_seq or 0, state.first_seq or 0
    if last == 0 or limit <= 0:
        return []
    seqs = list(range(max(first, last - limit + 1), last + 1))
    gate = asyncio.Semaphore(PARALLEL)

    async def one(seq: int) -> Record | None:
        async with gate:
            try:
                msg = await jsm.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                return None  # deleted or expired meanwhile
            except Exception as exc:
                raise translate(exc, f"read stream {stream}") from None
        at = msg.time.timestamp() if msg.time is not None else 0.0
        return _record(stream, seq, msg.headers, msg.data or b"", at)

    found = await asyncio.gather(*(one(s) for s in seqs))
    return [r for r in found if r is not None]


class NatsTail:
    """An ephemeral pull consumer at the stream's end; `close()` deletes it."""

    def __init__(self, conn: Connection, stream: str) -> None:
        self._conn = conn
        self._stream = stream
        self._name = ""
        self._sub: object | None = None

    @classmethod
    async def open(cls, conn: Connection, stream: str) -> NatsTail:
        tail = cls(conn, stream)
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=INACTIVE,
            mem_storage=True,
            description="kbroker console tail (ephemeral)",
        )
        try:
            jsm = await conn.jsm()
            info = await jsm.add_consumer(stream, config)
            tail._name = info.name
            js = await conn.js()
            tail._sub = await js.pull_subscribe_bind(consumer=info.name, stream=stream)
        except Exception as exc:
            await tail.close()
            raise translate(exc, f"tail stream {stream}") from None
        return tail

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        sub = self._sub
        if sub is None:
            return []
        deadline = time.monotonic() + timeout
        try:
            msgs = await sub.fetch(max(1, min(max_records, 256)), timeout=max(0.05, timeout))  # type: ignore[attr-defined]
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except Exception as exc:
            if time.monotonic() < deadline and self._sub is None:
                return []  # closed while waiting
            raise ChannelUnavailable(f"tail stream {self._stream}: {exc}") from None
        out: list[Record] = []
        for msg in msgs:
            meta = msg.metadata
            record = _record(
                self._stream,
                meta.sequence.stream,
                msg.headers,
                msg.data,
                meta.timestamp.timestamp(),
            )
            if record is not None:
                out.append(record)
        return out

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]
        if self._name:
            name, self._name = self._name, ""
            with contextlib.suppress(Exception):
                await (await self._conn.jsm()).delete_consumer(self._stream, name)
