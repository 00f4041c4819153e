"""The console's `Events` port inside `kbroker run`: a broker's events read from its own channel.

The running process already holds every broker's channel (wiring.open_channels) and the current
contract (ContractHolder), so the console reads history and tails through the channel's optional
`Inspector` (core/channel.py) directly, without HTTP and without being a Trigger: nothing is
committed and no consumer state is left behind. `publish` appends as the ingress does (loop guard,
arrival time), at the durability asked for.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

from kbroker.core import contract, ttl
from kbroker.core.channel import (
    Channel,
    ChannelError,
    ChannelUnavailable,
    Envelope,
    Inspector,
    Tail,
)
from kbroker.core.contract_source import ContractHolder
from kbroker.core.events import CloudEvent

ARRIVAL = "knativearrivaltime"
FETCH = 500  # records per read of a tail
WAIT = 1.0  # seconds a tail read waits for new records before checking it is still wanted


class ChannelEvents:
    """`ui.ports.Events` over the process's channels."""

    def __init__(
        self, channels: Mapping[str, Channel], holder: ContractHolder, max_ttl: int = ttl.DEFAULT
    ) -> None:
        self._channels = channels
        self._holder = holder
        self._max_ttl = max_ttl

    def _find(self, namespace: str, broker: str) -> tuple[contract.Broker, Channel]:
        found = self._holder.broker(f"{namespace}/{broker}")
        if found is None:
            raise ChannelError(f"broker {namespace}/{broker} is not in the running configuration")
        channel = self._channels.get(found.channel)
        if channel is None:
            raise ChannelUnavailable(f"channel {found.channel!r} is not available")
        return found, channel

    async def recent(self, namespace: str, broker: str, limit: int) -> list[Envelope] | None:
        b, channel = self._find(namespace, broker)
        if not isinstance(channel, Inspector):
            return None
        records = await channel.recent(b, limit)
        return None if records is None else [r.envelope for r in records]

    def tail(self, namespace: str, broker: str) -> ChannelTail:
        b, channel = self._find(namespace, broker)
        return ChannelTail(channel, b)

    async def publish(
        self,
        namespace: str,
        broker: str,
        event: CloudEvent,
        durability: contract.Durability,
    ) -> None:
        b, channel = self._find(namespace, broker)
        if not ttl.admit(event.attributes, self._max_ttl):
            raise ValueError(f"{ttl.EXTENSION} exhausted or invalid: event loop?")
        now = time.time()
        event.attributes.setdefault(ARRIVAL, _rfc3339(now))
        await channel.append(b, [Envelope(event, now)], durability)


def _rfc3339(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


class ChannelTail:
    """An async iterator of envelopes from a channel tail, opened by `opened()` (or its first
    step) and closed by `aclose()`."""

    def __init__(self, channel: Channel, broker: contract.Broker) -> None:
        self._channel = channel
        self._broker = broker
        self._tail: Tail | None = None
        self._pending: deque[Envelope] = deque()
        self._closed = False

    async def opened(self) -> None:
        if self._tail is None:
            if not isinstance(self._channel, Inspector):
                raise ChannelUnavailable(f"channel {self._channel.name} cannot be tailed")
            self._tail = await self._channel.tail(self._broker)

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self

    async def __anext__(self) -> Envelope:
        if self._closed:
            raise StopAsyncIteration
        await self.opened()
        while not self._pending:
            if self._closed or self._tail is None:
                raise StopAsyncIteration
            self._pending.extend(r.envelope for r in await self._tail.fetch(FETCH, WAIT))
        return self._pending.popleft()

    async def aclose(self) -> None:
        self._closed = True
        if self._tail is not None:
            tail, self._tail = self._tail, None
            await tail.close()
