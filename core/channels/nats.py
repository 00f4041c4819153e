"""The NATS JetStream channel: a stream per Broker, a durable pull consumer per Trigger (nats-py).

Why it exists: a broker's events can live in NATS JetStream, as with Knative's
NatsJetStreamChannel, so other NATS clients can read and write the same subjects. This module is
the Channel API (what the rest of kbroker imports: `NatsChannel`, `NatsSettings`, the stream and
consumer names); the work is done by its private modules, the only ones that import `nats`, which
translate its exceptions into `core.channel` errors:

    _nats_records   Envelope <-> NATS message (CloudEvents NATS binding, binary mode + kb-* headers)
    _nats_producer  appends, and what a 202 means at each durability level
    _nats_consumer  a trigger's durable pull consumer: fetch, commit (acks), lag
    _nats_client    the connection (lazy, reconnecting), streams, consumers, error mapping
    _nats_inspect   the console's readers: the last N messages (direct get), an ephemeral tail

Names: stream `knative-broker-<ns>-<name>` (the Broker's storage name, from --topic-template),
subject the same, consumer `knative-trigger-<ns>-<name>`; characters JetStream does not allow in
names (a dot in a Kubernetes name) become `_`. A plain client publishes a CloudEvent to the subject
and kbroker delivers it; kbroker's messages read as CloudEvents by any binding-aware client.

What it refuses to do: store events anywhere but JetStream (even durability `none` goes to the
stream, unacknowledged), block the event loop, or wait without a bound.
"""

from __future__ import annotations

from collections.abc import Sequence

from kbroker.core import contract
from kbroker.core.channel import ChannelError, Envelope, Record
from kbroker.core.channels import _nats_inspect, _nats_producer
from kbroker.core.channels._nats_client import Connection, jetstream_name
from kbroker.core.channels._nats_consumer import NatsSubscription
from kbroker.core.settings import NatsSettings

__all__ = ["NatsChannel", "NatsSettings", "NatsSubscription", "consumer_of", "stream_of"]


def stream_of(broker: contract.Broker) -> str:
    """The broker's stream; its subject has the same name."""
    return jetstream_name(broker.topic or f"knative-broker-{broker.namespace}-{broker.name}")


def consumer_of(trigger: contract.Trigger) -> str:
    return jetstream_name(
        trigger.consumer_group or f"knative-trigger-{trigger.namespace}-{trigger.name}"
    )


def replicas_of(broker: contract.Broker, settings: NatsSettings) -> int:
    raw = dict(broker.channel_config).get("replicas")
    try:
        return int(raw) if raw else settings.replicas
    except ValueError:
        raise ChannelError(f"nats channel: replicas {raw!r} is not a number") from None


class NatsChannel:
    """The Channel Protocol over one NATS server or cluster (`NatsSettings.url`)."""

    name = "nats"

    def __init__(self, settings: NatsSettings) -> None:
        self._settings = settings
        self._conn = Connection(settings)
        self._subs: set[NatsSubscription] = set()
        # Last sequence this process stored per stream: where a new `latest` trigger starts.
        self._last_seq: dict[str, int] = {}

    async def start(self) -> None:
        pass  # connects on first use, so a server that is down does not stop the process

    async def close(self) -> None:
        for sub in list(self._subs):
            await sub.close()
        await self._conn.close()

    async def ensure_broker(self, broker: contract.Broker) -> None:
        name = stream_of(broker)
        await self._conn.ensure_stream(name, name, replicas_of(broker, self._settings))

    async def delete_broker(self, broker: contract.Broker) -> None:
        name = stream_of(broker)
        for sub in [s for s in self._subs if s.stream == name]:
            await sub.close()
        self._last_seq.pop(name, None)
        await self._conn.delete_stream(name)  # its consumers go with it

    async def append(
        self,
        broker: contract.Broker,
        envelopes: Sequence[Envelope],
        durability: contract.Durability,
    ) -> None:
        if not envelopes:
            return
        name = stream_of(broker)

        def stored(seq: int) -> None:
            self._last_seq[name] = max(seq, self._last_seq.get(name, 0))

        await _nats_producer.append(self._conn, name, envelopes, durability, stored)

    def subscribe(self, broker: contract.Broker, trigger: contract.Trigger) -> NatsSubscription:
        name = stream_of(broker)
        last = self._last_seq.get(name)
        sub = NatsSubscription(
            self._conn, name, consumer_of(trigger), trigger.start_from,
            None if last is None else last + 1, self._subs.discard,
        )  # fmt: skip
        self._subs.add(sub)
        return sub

    async def delete_subscription(self, broker: contract.Broker, trigger: contract.Trigger) -> None:
        stream, consumer = stream_of(broker), consumer_of(trigger)
        for sub in [s for s in self._subs if s.consumer == consumer and s.stream == stream]:
            await sub.close()
        await self._conn.delete_consumer(stream, consumer)

    async def recent(self, broker: contract.Broker, limit: int) -> list[Record]:
        """Inspector: the last `limit` messages, by direct get (no consumer)."""
        return await _nats_inspect.recent(self._conn, stream_of(broker), limit)

    async def tail(self, broker: contract.Broker) -> _nats_inspect.NatsTail:
        """Inspector: an ephemeral pull consumer at the stream's end, deleted on close."""
        return await _nats_inspect.NatsTail.open(self._conn, stream_of(broker))

    async def healthy(self) -> bool:
        if not self._conn.servers:
            return True  # no NATS configured, none in use
        return await self._conn.healthy()
