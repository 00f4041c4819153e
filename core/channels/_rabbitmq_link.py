"""The RabbitMQ channel's connection to one server: opened lazily, reopened after a failure, and
every client error translated into a `core.channel` error.

Why it exists: producers, subscriptions and topology calls share one AMQP connection per server (a
connection is a TCP socket and a heartbeat; AMQP channels inside it are cheap), and all of them need
the same rule when the server is gone: fail within a bound (an append answers 503 within
`connect_timeout + op_timeout`, under 5 s by default), then try again on the next call, so the
channel recovers by itself when the server comes back.

What it refuses to do: retry inside a call (the caller's caller decides: the ingress answers 503,
the dispatcher fetches again), or wait without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection
from kbroker.core.channel import ChannelError, ChannelUnavailable
from kbroker.core.settings import RabbitMQSettings

log = logging.getLogger("kbroker.channel.rabbitmq")
T = TypeVar("T")

# What a lost server, a closed socket or a closed AMQP channel raise.
TRANSIENT: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ConnectionChannelError,
    OSError,  # ConnectionError and socket errors
    TimeoutError,
)
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT, aiormq.exceptions.AMQPError)


class Link:
    """One server's connection and its named AMQP channels ("confirm" for publishing, "admin")."""

    def __init__(self, url: str, settings: RabbitMQSettings) -> None:
        self.url = url
        self.settings = settings
        self._conn: AbstractConnection | None = None
        self._channels: dict[str, AbstractChannel] = {}
        self._lock = asyncio.Lock()
        self._failed_at = -1e9
        self.generation = 0  # bumped per new connection: subscriptions re-consume on a change

    async def connection(self) -> AbstractConnection:
        conn = self._conn
        if conn is not None and not conn.is_closed:
            return conn
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.is_closed:
                return conn
            if time.monotonic() - self._failed_at < self.settings.reconnect_backoff:
                raise ChannelUnavailable("rabbitmq: server unreachable (retrying shortly)")
            try:
                conn = await asyncio.wait_for(
                    aiormq.connect(self.url), self.settings.connect_timeout
                )
            except _CONNECT_ERRORS as exc:
                self._failed_at = time.monotonic()
                raise ChannelUnavailable(f"rabbitmq: cannot connect: {exc!r}") from None
            self._conn = conn
            self._channels.clear()
            self.generation += 1
            log.info("connected to %s", _safe(self.url))
            return conn

    async def channel(self, name: str) -> AbstractChannel:
        """A named AMQP channel on the current connection (opened on first use, or again after the
        server closed it, e.g. on a declare error)."""
        ch = self._channels.get(name)
        if ch is not None and not ch.is_closed:
            return ch
        conn = await self.connection()
        async with self.guard(f"open channel {name}"):
            ch = await asyncio.wait_for(
                conn.channel(publisher_confirms=name == "confirm"), self.settings.op_timeout
            )
        self._channels[name] = ch
        return ch

    async def open_channel(self) -> AbstractChannel:
        """A channel of its own (a subscription's consumer: its delivery tags are its own)."""
        conn = await self.connection()
        async with self.guard("open channel"):
            return await asyncio.wait_for(
                conn.channel(publisher_confirms=False), self.settings.op_timeout
            )

    async def call(self, what: str, op: Awaitable[T]) -> T:
        async with self.guard(what):
            return await asyncio.wait_for(op, self.settings.op_timeout)

    @contextlib.asynccontextmanager
    async def guard(self, what: str) -> AsyncIterator[None]:
        """Client errors as ours: a lost server is ChannelUnavailable, a refusal ChannelError."""
        try:
            yield
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise ChannelError(f"rabbitmq: {what}: not found: {exc}") from None
        except aiormq.exceptions.DeliveryError as exc:
            raise ChannelUnavailable(f"rabbitmq: {what}: not confirmed: {exc}") from None
        except TRANSIENT as exc:
            self._drop_if_dead()
            raise ChannelUnavailable(f"rabbitmq: {what}: {exc!r}") from None
        except aiormq.exceptions.AMQPError as exc:
            raise ChannelError(f"rabbitmq: {what}: {exc!r}") from None

    def _drop_if_dead(self) -> None:
        if self._conn is not None and self._conn.is_closed:
            self._conn = None
            self._channels.clear()

    async def healthy(self) -> bool:
        try:
            await self.connection()
        except ChannelError:
            return False
        return True

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        self._channels.clear()
        if conn is not None and not conn.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.settings.op_timeout)


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}"
