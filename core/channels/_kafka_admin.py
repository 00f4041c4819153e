"""One Kafka cluster's admin side for the Kafka channel, and what all its clients share.

Why it exists: topics, consumer groups, end offsets and health are questions to the cluster, not to
a producer or a group member, so they go through one `AdminClient` per cluster, here. The pieces
every client of the channel needs (client defaults, the librdkafka logger, the translation of
librdkafka errors into `core.channel` errors) live here too, so the producer and consumer modules
depend on this one and never on each other.

What it refuses to do: block the event loop (every admin call runs on a worker thread), wait
without a bound (each call has a timeout), or let a confluent_kafka exception out: callers get a
`ChannelError`, or a logged warning where giving up is harmless (deleting a consumer group).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from kbroker.core.channel import ChannelError, ChannelUnavailable, EventTooLarge
from kbroker.core.settings import KafkaSettings

# One logger for the whole channel, whichever of its modules logs.
log = logging.getLogger("kbroker.core.channels.kafka")
# librdkafka's own log lines (one per failed connect while Kafka is down): a child logger, so an
# operator can quiet them without losing ours.
rdlog = log.getChild("librdkafka")

# librdkafka backs off reconnects up to 10 s by default: after a Kafka restart appends would keep
# failing that long. 1 s caps the wait at the cost of a connect attempt a second while it is down.
CLIENT_DEFAULTS: dict[str, Any] = {"reconnect.backoff.max.ms": 1000}


def translate(err: KafkaError | None, what: str) -> ChannelError:
    """A librdkafka error as the channel error a caller can act on."""
    if err is None:
        return ChannelUnavailable(f"{what}: unknown Kafka error")
    code = err.code()
    message = f"{what}: {err.str()}"
    if code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE):
        return EventTooLarge(message)
    if code in (KafkaError.INVALID_REPLICATION_FACTOR, KafkaError.INVALID_PARTITIONS,
                KafkaError.INVALID_CONFIG, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.TOPIC_EXCEPTION):  # fmt: skip
        return ChannelError(message)  # retrying will not help
    return ChannelUnavailable(message)


def error_of(e: BaseException) -> KafkaError | None:
    """The KafkaError inside a KafkaException, if any."""
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return e.args[0]
    return None


class Admin:
    """The admin client of one cluster: topics, consumer groups, end offsets, health."""

    def __init__(self, bootstrap: str, settings: KafkaSettings) -> None:
        self.settings = settings
        # Admin futures resolve on librdkafka's own thread; its logs would only queue (no poll),
        # so it logs nothing below critical.
        self.client = AdminClient(
            {**CLIENT_DEFAULTS, "bootstrap.servers": bootstrap, "log_level": 2}
        )
        self._health: tuple[float, bool] = (0.0, False)

    async def create_topic(
        self, name: str, partitions: int, replication: int, config: dict[str, str]
    ) -> None:
        """Create the topic (already there is fine) and wait until the cluster lists it."""
        topic = NewTopic(
            name, num_partitions=partitions, replication_factor=replication, config=config
        )
        timeout = self.settings.admin_timeout
        futures = self.client.create_topics(
            [topic], operation_timeout=timeout, request_timeout=timeout
        )
        try:
            await asyncio.to_thread(futures[name].result, timeout + 1)
        except KafkaException as e:
            err = error_of(e)
            if err is None or err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise translate(err, f"create topic {name}") from None
        except TimeoutError:
            raise ChannelUnavailable(f"create topic {name}: timed out") from None
        await self._await_topic(name, present=True)

    async def delete_topic(self, name: str) -> None:
        """Delete the topic (already gone is fine) and wait until the cluster no longer lists it."""
        timeout = self.settings.admin_timeout
        futures = self.client.delete_topics([name], operation_timeout=timeout)
        try:
            await asyncio.to_thread(futures[name].result, timeout + 1)
        except KafkaException as e:
            err = error_of(e)
            if err is None or err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise translate(err, f"delete topic {name}") from None
        except TimeoutError:
            raise ChannelUnavailable(f"delete topic {name}: timed out") from None
        # Deletion completes asynchronously; a broker re-created at once must get a new topic.
        await self._await_topic(name, present=False)

    async def _await_topic(self, topic: str, *, present: bool) -> None:
        """Until the cluster's metadata (not just the controller) agrees the topic is there/gone."""
        timeout = self.settings.admin_timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                meta = await asyncio.to_thread(self.client.list_topics, topic, timeout)
            except KafkaException as e:
                raise translate(error_of(e), f"metadata of {topic}") from None
            info = meta.topics.get(topic)
            if bool(info is not None and info.error is None and info.partitions) == present:
                return
            if time.monotonic() > deadline:
                state = "listed" if present else "gone"
                raise ChannelUnavailable(f"topic {topic}: not {state} after {timeout:.0f}s")
            await asyncio.sleep(0.05)

    async def delete_group(self, group: str) -> None:
        """Delete a consumer group; members elsewhere may take a moment to leave (bounded)."""
        timeout = self.settings.admin_timeout
        deadline = time.monotonic() + timeout
        while True:
            futures = self.client.delete_consumer_groups([group], request_timeout=timeout)
            try:
                await asyncio.to_thread(futures[group].result, timeout + 1)
                return
            except KafkaException as e:
                err = error_of(e)
                code = err.code() if err else None
                if code == KafkaError.GROUP_ID_NOT_FOUND:
                    return
                if code != KafkaError.NON_EMPTY_GROUP or time.monotonic() > deadline:
                    log.warning("kafka: cannot delete consumer group %s: %s", group, e)
                    return
            except TimeoutError:
                log.warning("kafka: deleting consumer group %s timed out", group)
                return
            await asyncio.sleep(0.2)

    def high_watermarks(self, topic: str, partitions: list[int]) -> dict[int, int]:
        """Blocking: the end offset of each partition (the admin client is safe on any thread,
        unlike calls on a consumer that its own thread is polling)."""
        timeout = self.settings.health_timeout * 5
        futures = self.client.list_offsets(
            {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},  # type: ignore[no-untyped-call]
            request_timeout=timeout,
        )
        try:
            return {tp.partition: f.result(timeout + 1).offset for tp, f in futures.items()}
        except KafkaException as e:
            raise translate(error_of(e), "kafka lag") from None
        except TimeoutError:
            raise ChannelUnavailable("kafka lag: end offsets timed out") from None

    async def healthy(self) -> bool:
        """Whether the cluster answers a metadata request; the answer is reused for `health_ttl`."""
        checked, ok = self._health
        if time.monotonic() - checked < self.settings.health_ttl:
            return ok
        try:
            await asyncio.to_thread(self.client.list_topics, timeout=self.settings.health_timeout)
            ok = True
        except KafkaException:
            ok = False
        self._health = (time.monotonic(), ok)
        return ok
