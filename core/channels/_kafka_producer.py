"""The Kafka channel's producing side: one cluster's producers, one per durability kind.

Why it exists: an append must come back on the event loop once Kafka has acknowledged the whole
batch at the asked durability, while librdkafka reports each message on its own poll thread. This
module owns those producers and their poll threads and turns N delivery callbacks into one future:

    append --produce()--> Producer[acks=1 (none, leader) | acks=all+idempotence (all)]  (lazily)
            <-future---   poll thread: delivery callbacks -> call_soon_threadsafe

`none` durability shares the acks=1 producer (see _PRODUCER_OF for why not acks=0). A producer
that hits a fatal error (an idempotent producer that lost its state) is replaced on the next append.

What it refuses to do: block the event loop (produce() only queues; a full queue is a 503, not a
wait), wait for a delivery report without a bound (librdkafka's message.timeout.ms, and a timer as
the net under it), or decide the record format (`_kafka_records` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from kbroker.core import contract
from kbroker.core.channel import ChannelUnavailable, Envelope
from kbroker.core.channels import _kafka_records as records
from kbroker.core.channels._kafka_admin import CLIENT_DEFAULTS, error_of, log, rdlog, translate
from kbroker.core.settings import KafkaSettings

# Durability -> producer. `none` shares the acks=1 producer and waits for its report too, instead of
# an acks=0 producer: acks=0 "succeeds" once the request is on the wire, so a producer's next append
# (say at `all`, on another connection) could be stored before it, and the broker drops an acks=0
# batch silently on any error. Measured here it bought ~0.4 ms per lone append and no throughput.
_PRODUCER_OF = {
    contract.Durability.NONE: "leader",
    contract.Durability.LEADER: "leader",
    contract.Durability.ALL: "all",
}
_ACKS: dict[str, dict[str, Any]] = {
    "leader": {"acks": "1"},
    "all": {"acks": "all", "enable.idempotence": True},
}


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():  # cancelled by the caller's timeout, or already failed
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


class _Batch:
    """Turns N delivery callbacks (poll thread) into one future on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None], n: int):
        self.loop, self.fut, self.remaining, self.done = loop, fut, n, False

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if self.done:
            return
        if err is not None:
            self.finish(translate(err, "delivery failed"))
            return
        self.remaining -= 1
        if self.remaining == 0:
            self.finish(None)

    def finish(self, exc: BaseException | None) -> None:
        self.done = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self.loop.call_soon_threadsafe(_resolve, self.fut, exc)


class _Producer:
    """One librdkafka producer and the thread that serves its delivery callbacks."""

    def __init__(self, config: dict[str, Any], name: str) -> None:
        self.fatal = False
        self._producer = Producer({**config, "error_cb": self._on_error, "logger": rdlog})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():  # an idempotent producer that lost its state: replace it
            log.error("kafka producer fatal error: %s", err.str())
            self.fatal = True

    def send(
        self, topic: str, batch: list[records.Produced], loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = loop.create_future()
        waiter = _Batch(loop, fut, len(batch))
        for key, headers, value in batch:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=waiter.on_delivery
                )
            except BufferError:
                waiter.done = True
                _resolve(fut, ChannelUnavailable("kafka producer queue is full"))
                break
            except KafkaException as e:
                waiter.done = True
                _resolve(fut, translate(error_of(e), "produce failed"))
                break
        return fut

    def close(self, timeout: float) -> None:
        """Blocking: deliver what is queued (bounded), then stop the poll thread."""
        self._producer.flush(timeout)
        self._stop.set()
        self._thread.join(timeout)


class Producers:
    """The producers of one cluster, created on first use, one per `_PRODUCER_OF` kind."""

    def __init__(self, bootstrap: str, settings: KafkaSettings) -> None:
        self.bootstrap = bootstrap
        self.settings = settings
        self._producers: dict[str, _Producer] = {}

    def _producer(self, level: contract.Durability) -> _Producer:
        kind = _PRODUCER_OF[level]
        p = self._producers.get(kind)
        if p is None or p.fatal:
            if p is not None:  # a fatal producer only fails: drop it off the loop
                threading.Thread(target=p.close, args=(0.0,), daemon=True).start()
            config = {
                **CLIENT_DEFAULTS,
                "bootstrap.servers": self.bootstrap,
                "message.timeout.ms": int(self.settings.delivery_timeout * 1000),
                # 1 ms: a lone append waits ~1.5 ms instead of ~6 ms (librdkafka default 5),
                # and under load batches still fill while earlier requests are in flight.
                "linger.ms": 1,
                **_ACKS[kind],
                **dict(self.settings.producer_config),
            }
            p = self._producers[kind] = _Producer(config, f"kafka-producer-{kind}")
        return p

    async def append(
        self,
        topic: str,
        envelopes: Sequence[Envelope],
        durability: contract.Durability,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Once Kafka has acknowledged every envelope at `durability`; raises a ChannelError."""
        batch = [records.encode(env) for env in envelopes]
        fut = self._producer(durability).send(topic, batch, loop)
        # librdkafka fails a message after message.timeout.ms; this timer is the net under it
        # (a timer, not wait_for: no extra future and no getpid() per append).
        net = loop.call_later(
            self.settings.delivery_timeout + 2.0,
            _resolve,
            fut,
            ChannelUnavailable("kafka: no delivery report in time"),
        )
        try:
            await fut
        finally:
            net.cancel()

    def close(self) -> None:
        """Blocking: flush and stop every producer (each bounded by the delivery timeout)."""
        for p in self._producers.values():
            p.close(self.settings.delivery_timeout)
        self._producers.clear()
