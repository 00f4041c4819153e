"""Where a source's event goes: straight into a Broker's channel, or an HTTP POST.

A sink that is a Broker this process serves is appended to through the Channel Protocol at
durability `all`, with the TTL ingress would stamp, so the event is stored exactly as if it had
been POSTed to the Broker's address, without a loopback request. Any other sink gets a binary-mode
POST retried on core/delivery's rules with Knative's ping retry policy (5 retries, exponential
from 50 ms); an event still refused after that is dropped and logged, as Knative does.

What this module refuses: scheduling (sources/ping) and any delivery feature beyond retries (no
dead-letter sink: a PingSource has none in Knative either).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import httpx
from kbroker.core import contract, delivery, events, ttl
from kbroker.core.channel import Channel, ChannelError, Envelope

log = logging.getLogger("kbroker.sources")

PING_DELIVERY = contract.DeliverySpec(
    retry=5, backoff_policy=contract.BackoffPolicy.EXPONENTIAL, backoff_delay=0.05, timeout=10.0
)


class Target(Protocol):
    """What a source says about its sink (PingSource and ApiServerSource entries both do)."""

    @property
    def sink_uri(self) -> str: ...

    @property
    def sink_broker(self) -> str: ...


class Emitter(Protocol):
    async def emit(self, ping: contract.PingSource, event: events.CloudEvent) -> bool:
        """Deliver `event`; False when it was given up on (already logged)."""
        ...

    async def close(self) -> None: ...


class SinkEmitter:
    """Brokers of this process by append, everything else by HTTP."""

    def __init__(
        self,
        channels: Mapping[str, Channel],
        broker: Callable[[str], contract.Broker | None],
        spec: contract.DeliverySpec = PING_DELIVERY,
    ) -> None:
        self.channels = channels
        self.broker = broker
        self.spec = spec
        self._client: httpx.AsyncClient | None = None

    async def emit(self, ping: Target, event: events.CloudEvent) -> bool:
        broker = self.broker(ping.sink_broker) if ping.sink_broker else None
        if broker is not None and broker.channel in self.channels:
            return await self._append(self.channels[broker.channel], broker, event)
        return await self._post(ping.sink_uri, event)

    async def _append(
        self, channel: Channel, broker: contract.Broker, event: events.CloudEvent
    ) -> bool:
        ttl.admit(event.attributes)
        for attempt in range(delivery.attempts(self.spec)):
            try:
                await channel.append(
                    broker, [Envelope(event, time.time())], contract.Durability.ALL
                )
                return True
            except ChannelError as exc:
                log.warning(
                    "source event %s (%s): append to %s failed: %s",
                    event.id,
                    event.type,
                    broker.key,
                    exc,
                )
                await asyncio.sleep(delivery.backoff(self.spec, attempt))
        log.error(
            "source event %s (%s) is lost: broker %s refused it", event.id, event.type, broker.key
        )
        return False

    async def _post(self, uri: str, event: events.CloudEvent) -> bool:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.spec.timeout)
        headers, body = events.encode_binary(event)
        status: int | None = None
        for attempt in range(delivery.attempts(self.spec)):
            try:
                resp = await self._client.post(uri, headers=headers, content=body)
                status = resp.status_code
                if delivery.is_success(status):
                    return True
            except httpx.HTTPError as exc:
                status = None
                log.warning(
                    "source event %s (%s): POST %s failed: %s", event.id, event.type, uri, exc
                )
            if not delivery.is_retryable(status):
                break
            await asyncio.sleep(delivery.backoff(self.spec, attempt))
        log.error("source event %s (%s) is lost: %s answered %s", event.id, event.type, uri, status)
        return False

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
