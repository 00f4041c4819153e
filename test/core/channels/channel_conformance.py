"""Channel Protocol conformance: what every backend must do, as plain async checks.

Why plain functions rather than a test class: each backend's test module runs the same checks with
its own factory (a tmp data dir, a Kafka cluster, an in-memory store), so the suite must not depend
on pytest fixtures. Use it like this:

    from test.core.channels import channel_conformance as conformance

    @pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
    async def test_conformance(check: conformance.Check, tmp_path: Path) -> None:
        await check(lambda: EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path)))

A factory returns a new, not yet started channel over the SAME storage on every call: calling it
twice is how a check "restarts the process". Checks give brokers and triggers random names, so a
backend whose storage outlives the test (a shared Kafka cluster) can run them side by side.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from core import contract
from core.channel import Channel, Envelope, Record, Subscription
from core.events import CloudEvent

ChannelFactory = Callable[[], Channel]
Check = Callable[[ChannelFactory], Awaitable[None]]

ALL = contract.Durability.ALL
EARLIEST = contract.StartFrom.EARLIEST
LATEST = contract.StartFrom.LATEST


def make_broker(name: str | None = None) -> contract.Broker:
    name = name or f"b-{uuid.uuid4().hex[:8]}"
    return contract.Broker(
        namespace="conformance", name=name, uid=uuid.uuid4().hex, address="http://x/"
    )


def make_trigger(
    broker: contract.Broker, start_from: contract.StartFrom, uid: str | None = None
) -> contract.Trigger:
    uid = uid or uuid.uuid4().hex
    return contract.Trigger(
        namespace=broker.namespace,
        name=f"t-{uid[:8]}",
        uid=contract.TriggerUid(uid),
        broker=broker.name,
        subscriber_uri="http://sink/",
        start_from=start_from,
        consumer_group=f"conformance-{uid}",
    )


def envelope(event_id: str, *, key: str | None = None, size: int = 16) -> Envelope:
    attrs: dict[str, str | int | bool] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/conformance",
        "type": "t",
        "count": 7,  # structured-mode JSON integer: must come back an int, not "7"
        "flag": True,
    }
    if key is not None:
        attrs["partitionkey"] = key
    data = (event_id.encode() * (size // max(1, len(event_id)) + 1))[:size]
    return Envelope(
        CloudEvent(attrs, data),
        arrival=time.time(),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="k=v",
    )


def ids(records: Sequence[Record]) -> list[str]:
    return [r.envelope.event.id for r in records]


@asynccontextmanager
async def running(factory: ChannelFactory) -> AsyncIterator[Channel]:
    channel = factory()
    await channel.start()
    try:
        yield channel
    finally:
        await channel.close()


async def drain(sub: Subscription, expected: int, *, timeout: float = 5.0) -> list[Record]:
    """Fetch until `expected` records arrived (or fail after `timeout` s), then check no more."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(out)} of {expected} records: {ids(out)}")
        out.extend(await sub.fetch(max(1, expected - len(out)), min(left, 1.0)))
    assert await sub.fetch(100, 0.05) == [], "more records than expected"
    return out


# --- the checks ---------------------------------------------------------------------------------


async def check_append_fetch_order(factory: ChannelFactory) -> None:
    """Batches come back in order, offsets increase, and every field survives the trip."""
    b = make_broker()
    async with running(factory) as ch:
        await ch.ensure_broker(b)
        sub = ch.subscribe(b, make_trigger(b, EARLIEST))
        await ch.append(b, [envelope("e1", key="k1"), envelope("e2")], ALL)
        await ch.append(b, [envelope(f"e{i}", size=1000) for i in range(3, 9)], ALL)
        got = await drain(sub, 8)
        assert ids(got) == [f"e{i}" for i in range(1, 9)]
        offsets = [r.offset for r in got]
        assert offsets == sorted(set(offsets)), offsets
        first, second = got[0], got[1]
        want = envelope("e1", key="k1")
        assert first.key == "k1" and second.key is None
        assert first.envelope.event.attributes == want.event.attributes
        assert first.envelope.event.data == want.event.data
        assert first.envelope.traceparent == want.traceparent
        assert first.envelope.tracestate == "k=v"
        assert abs(first.envelope.arrival - want.arrival) < 60
        assert len(got[5].envelope.event.data or b"") == 1000
        await sub.close()


async def check_fetch_respects_max_records(factory: ChannelFactory) -> None:
    b = make_broker()
    async with running(factory) as ch:
        await ch.ensure_broker(b)
        sub = ch.subscribe(b, make_trigger(b, EARLIEST))
        await ch.append(b, [envelope(f"e{i}") for i in range(5)], ALL)
        seen: list[Record] = []
        while len(seen) < 5:
            batch = await sub.fetch(2, 2.0)
            assert 1 <= len(batch) <= 2, ids(batch)
            seen.extend(batch)
        assert ids(seen) == [f"e{i}" for i in range(5)]


async def check_latest_vs_earliest(factory: ChannelFactory) -> None:
    """A new trigger starts at the end (LATEST) or the beginning (EARLIEST) of the log."""
    b = make_broker()
    async with running(factory) as ch:
        await ch.ensure_broker(b)
        await ch.append(b, [envelope("old1"), envelope("old2")], ALL)
        latest = ch.subscribe(b, make_trigger(b, LATEST))
        earliest = ch.subscribe(b, make_trigger(b, EARLIEST))
        await ch.append(b, [envelope("new")], ALL)
        assert ids(await drain(latest, 1)) == ["new"]
        assert ids(await drain(earliest, 3)) == ["old1", "old2", "new"]


async def check_commit_resume_after_reopen(factory: ChannelFactory) -> None:
    """A trigger resumes after its committed offset in a new channel; commits never go back."""
    b = make_broker()
    t = make_trigger(b, EARLIEST)
    async with running(factory) as ch:
        await ch.ensure_broker(b)
        await ch.append(b, [envelope(f"e{i}") for i in range(5)], ALL)
        sub = ch.subscribe(b, t)
        got = await drain(sub, 5)
        await sub.commit(got[2].partition, got[2].offset)
        await sub.commit(got[0].partition, got[0].offset)  # backwards: ignored
        await sub.close()
    async with running(factory) as ch:
        sub = ch.subscribe(b, t)
        assert ids(await drain(sub, 2)) == ["e3", "e4"]


async def check_latest_start_is_pinned(factory: ChannelFactory) -> None:
    """A LATEST trigger's start is fixed when it subscribes: a restart before its first commit
    must not skip what arrived in between."""
    b = make_broker()
    t = make_trigger(b, LATEST)
    async with running(factory) as ch:
        await ch.ensure_broker(b)
        await ch.append(b, [envelope("before")], ALL)
        sub = ch.subscribe(b, t)
        assert await sub.fetch(10, 0.05) == []
        await ch.append(b, [envelope("after")], ALL)
        await sub.close()
    async with running(factory) as ch:
        sub = ch.subscribe(b, t)
        assert ids(await drain(sub, 1)) == ["after"]


async def check_lag(factory: ChannelFactory) -> None:
    b = make_broker()
    async with running(factory) as ch:
        await ch.ensure_broker(b)
        sub = ch.subscribe(b, make_trigger(b, EARLIEST))
        assert await sub.lag() == 0
        await ch.append(b, [envelope(f"e{i}") for i in range(5)], ALL)
        assert await sub.lag() == 5
        got = await drain(sub, 5)
        assert await sub.lag() == 5, "fetching is not committing"
        await sub.commit(got[1].partition, got[1].offset)
        assert await sub.lag() == 3
        await sub.commit(got[4].partition, got[4].offset)
        assert await sub.lag() == 0


async def check_delete_subscription(factory: ChannelFactory) -> None:
    """After delete_subscription a trigger with the same uid starts afresh."""
    b = make_broker()
    t = make_trigger(b, EARLIEST)
    async with running(factory) as ch:
        await ch.ensure_broker(b)
        await ch.append(b, [envelope("e0"), envelope("e1")], ALL)
        sub = ch.subscribe(b, t)
        got = await drain(sub, 2)
        await sub.commit(got[-1].partition, got[-1].offset)
        await sub.close()
        await ch.delete_subscription(b, t)
        again = ch.subscribe(b, t)
        assert ids(await drain(again, 2)) == ["e0", "e1"]
        await again.close()


async def check_delete_broker(factory: ChannelFactory) -> None:
    """delete_broker drops the events and the positions; other brokers are untouched."""
    b, other = make_broker(), make_broker()
    t = make_trigger(b, EARLIEST)
    async with running(factory) as ch:
        for x in (b, other):
            await ch.ensure_broker(x)
            await ch.append(x, [envelope(f"{x.name}-1")], ALL)
        sub = ch.subscribe(b, t)
        got = await drain(sub, 1)
        await sub.commit(got[0].partition, got[0].offset)
        await sub.close()
        await ch.delete_broker(b)
        await ch.ensure_broker(b)
        await ch.append(b, [envelope("fresh")], ALL)
        sub = ch.subscribe(b, t)  # same trigger uid: its old position is gone too
        assert ids(await drain(sub, 1)) == ["fresh"]
        keep = ch.subscribe(other, make_trigger(other, EARLIEST))
        assert ids(await drain(keep, 1)) == [f"{other.name}-1"]


async def check_brokers_are_isolated(factory: ChannelFactory) -> None:
    b1, b2 = make_broker(), make_broker()
    async with running(factory) as ch:
        subs = []
        for b in (b1, b2):
            await ch.ensure_broker(b)
            subs.append(ch.subscribe(b, make_trigger(b, EARLIEST)))
        await ch.append(b1, [envelope("one")], ALL)
        await ch.append(b2, [envelope("two")], ALL)
        assert ids(await drain(subs[0], 1)) == ["one"]
        assert ids(await drain(subs[1], 1)) == ["two"]


async def check_concurrent_appenders(factory: ChannelFactory) -> None:
    """Many producers at once, every durability: each event stored once, each producer in order."""
    b = make_broker()
    levels = list(contract.Durability)
    producers, per_producer = 24, 15
    async with running(factory) as ch:
        await ch.ensure_broker(b)
        sub = ch.subscribe(b, make_trigger(b, EARLIEST))

        async def produce(p: int) -> None:
            for i in range(per_producer):
                await ch.append(b, [envelope(f"p{p}-{i}")], levels[(p + i) % len(levels)])

        await asyncio.gather(*(produce(p) for p in range(producers)))
        got = ids(await drain(sub, producers * per_producer))
        assert len(set(got)) == len(got)
        for p in range(producers):
            mine = [x for x in got if x.startswith(f"p{p}-")]
            assert mine == [f"p{p}-{i}" for i in range(per_producer)]


async def check_fetch_timeout_and_wakeup(factory: ChannelFactory) -> None:
    """An empty fetch returns [] close to its timeout; an append wakes a waiting fetch at once."""
    b = make_broker()
    async with running(factory) as ch:
        await ch.ensure_broker(b)
        sub = ch.subscribe(b, make_trigger(b, LATEST))
        assert await sub.fetch(10, 0.05) == []  # let the subscription settle
        start = time.monotonic()
        assert await sub.fetch(10, 0) == []
        assert time.monotonic() - start < 0.2
        start = time.monotonic()
        assert await sub.fetch(10, 0.3) == []
        assert 0.25 <= time.monotonic() - start < 0.8
        waiting = asyncio.ensure_future(sub.fetch(10, 10.0))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await ch.append(b, [envelope("wake")], ALL)
        assert ids(await asyncio.wait_for(waiting, 5.0)) == ["wake"]
        assert time.monotonic() - start < 1.0


async def check_healthy(factory: ChannelFactory) -> None:
    b = make_broker()
    async with running(factory) as ch:
        await ch.ensure_broker(b)
        assert await ch.healthy()


CHECKS: tuple[Check, ...] = (
    check_append_fetch_order,
    check_fetch_respects_max_records,
    check_latest_vs_earliest,
    check_commit_resume_after_reopen,
    check_latest_start_is_pinned,
    check_lag,
    check_delete_subscription,
    check_delete_broker,
    check_brokers_are_isolated,
    check_concurrent_appenders,
    check_fetch_timeout_and_wakeup,
    check_healthy,
)


def check_id(check: Check) -> str:
    """Readable pytest ids: the check's name without its `check_` prefix."""
    return getattr(check, "__name__", "check").removeprefix("check_")
