"""The NATS channel's connection to one server (or cluster): connecting, streams, consumers, errors.

Why it exists: every part of the channel needs the same client, connected lazily and reconnecting
by itself, and the same translation of nats-py's exceptions into `core.channel` errors, so both
live here once. nats-py reconnects a dropped connection forever on its own; what it does not do is
retry a *first* connect, so `client()` makes one bounded attempt per call and the caller gets
`ChannelUnavailable` (a 503) while the server is away, and a working client once it is back.

What it refuses to do: wait without a bound (every connect and API request has a timeout), or let a
nats-py exception escape (`translate` maps them; an unknown one becomes `ChannelError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time

import nats
import nats.errors
import nats.js.errors
from kbroker.core.channel import ChannelError, ChannelFull, ChannelUnavailable, EventTooLarge
from kbroker.core.settings import NatsSettings
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.manager import JetStreamManager

log = logging.getLogger(__name__)

_INVALID = re.compile(r"[^A-Za-z0-9_-]")
# JetStream error codes meaning "no room" (account/server storage, stream limits with DiscardNew).
_FULL_CODES = {10023, 10028, 10047, 10054, 10077}


def jetstream_name(raw: str) -> str:
    """A stream, consumer and subject-token name JetStream accepts: anything but letters, digits,
    `-` and `_` becomes `_` (Kubernetes names may hold dots; `.`, `*`, `>` and spaces are not
    allowed in JetStream names)."""
    return _INVALID.sub("_", raw)


def translate(exc: BaseException, what: str) -> ChannelError:
    """The `core.channel` error for a nats-py (or timeout) exception raised while doing `what`."""
    if isinstance(exc, ChannelError):
        return exc
    if isinstance(exc, nats.errors.MaxPayloadError):
        return EventTooLarge(f"nats: {what}: larger than the server's max_payload")
    if isinstance(exc, nats.js.errors.APIError):
        code = exc.err_code or 0
        if code in _FULL_CODES:
            return ChannelFull(f"nats: {what}: {exc.description}")
        if isinstance(exc, nats.js.errors.ServiceUnavailableError) or exc.code == 503:
            return ChannelUnavailable(f"nats: {what}: JetStream unavailable: {exc.description}")
        return ChannelError(f"nats: {what}: {exc.description} (code {exc.code}/{code})")
    if isinstance(
        exc,
        asyncio.TimeoutError
        | TimeoutError
        | OSError
        | nats.errors.NoRespondersError
        | nats.js.errors.NoStreamResponseError
        | nats.errors.ConnectionClosedError
        | nats.errors.ConnectionReconnectingError
        | nats.errors.OutboundBufferLimitError
        | nats.errors.StaleConnectionError
        | nats.errors.NoServersError
        | nats.js.errors.TooManyStalledMsgsError,
    ):
        return ChannelUnavailable(f"nats: {what}: {type(exc).__name__} {exc}".rstrip())
    return ChannelError(f"nats: {what}: {type(exc).__name__}: {exc}")


class Connection:
    """One lazily connected nats-py client and its JetStream contexts."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.servers = [s.strip() for s in (settings.url or "").split(",") if s.strip()]
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None  # one: its async-publish inbox is per context
        self._lock = asyncio.Lock()
        self._health: tuple[float, bool] = (0.0, False)

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def client(self) -> Client:
        """The connected client; one bounded connect attempt when there is none yet."""
        nc = self._nc
        if nc is not None and not nc.is_closed:
            return nc
        if not self.servers:
            raise ChannelError("nats: no server URL (run kbroker with --nats URL)")
        async with self._lock:
            if self._nc is not None and not self._nc.is_closed:
                return self._nc
            nc = Client()
            try:
                await asyncio.wait_for(
                    nc.connect(
                        servers=self.servers,
                        name="kbroker",
                        connect_timeout=max(1, int(self.settings.connect_timeout)),
                        allow_reconnect=True,
                        max_reconnect_attempts=-1,  # once connected, never give up
                        reconnect_time_wait=1,
                        error_cb=_log_error,
                    ),
                    self.settings.connect_timeout,
                )
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await nc.close()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise translate(exc, "connect") from None
            self._nc = nc
            self._js = nc.jetstream(timeout=self.settings.api_timeout)
            return nc

    async def js(self) -> JetStreamContext:
        await self.client()
        assert self._js is not None
        return self._js

    async def jsm(self) -> JetStreamManager:
        return (await self.client()).jsm(timeout=self.settings.api_timeout)

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5.0)

    async def ensure_stream(self, name: str, subject: str, replicas: int) -> None:
        """The stream exists with `replicas` replicas: created when missing; an existing one
        keeps its other settings (and its events) and only has its replica count changed, which
        JetStream does in place (it adds or removes peers and copies the data to new ones)."""
        try:
            jsm = await self.jsm()
            try:
                info = await jsm.stream_info(name)
            except nats.js.errors.NotFoundError:
                info = None
            if info is not None:
                if (info.config.num_replicas or 1) != replicas:
                    log.info(
                        "stream %s: replicas %s -> %d", name, info.config.num_replicas, replicas
                    )
                    await jsm.update_stream(dataclasses.replace(info.config, num_replicas=replicas))
                return
            config = api.StreamConfig(
                name=name,
                subjects=[subject],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                discard=api.DiscardPolicy.OLD,
                num_replicas=replicas,
            )
            await jsm.add_stream(config)
        except Exception as exc:
            raise translate(exc, f"create stream {name}") from None

    async def delete_stream(self, name: str) -> None:
        try:
            await (await self.jsm()).delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        except Exception as exc:
            raise translate(exc, f"delete stream {name}") from None

    async def delete_consumer(self, stream: str, name: str) -> None:
        try:
            await (await self.jsm()).delete_consumer(stream, name)
        except nats.js.errors.NotFoundError:
            pass
        except Exception as exc:
            raise translate(exc, f"delete consumer {name}") from None

    async def healthy(self) -> bool:
        """Connected and JetStream answering (account info), cached for `health_ttl` s."""
        at, ok = self._health
        if time.monotonic() - at < self.settings.health_ttl:
            return ok
        try:
            await (await self.jsm()).account_info()
            ok = True
        except Exception:
            ok = False
        self._health = (time.monotonic(), ok)
        return ok


async def _log_error(exc: Exception) -> None:
    # nats-py reports every failed reconnect here; the appends and fetches report the outage.
    log.debug("nats client: %s", exc)
