"""EmbeddedChannel as an Inspector: the shared checks, and a tail writes nothing to the log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fixtures import channel_conformance as conformance
from fixtures import inspect_conformance as inspect
from kbroker.core.channels.embedded import EmbeddedChannel, db_path
from kbroker.core.settings import EmbeddedSettings


def _factory(tmp_path: Path) -> conformance.ChannelFactory:
    return lambda: EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path))


@pytest.mark.parametrize("check", inspect.INSPECT_CHECKS, ids=inspect.check_id)
async def test_inspector(check: inspect.InspectCheck, tmp_path: Path) -> None:
    await check(_factory(tmp_path))


async def test_tail_and_recent_leave_no_position(tmp_path: Path) -> None:
    broker = conformance.make_broker()
    async with conformance.running(_factory(tmp_path)) as channel:
        assert isinstance(channel, EmbeddedChannel)
        trigger = conformance.make_trigger(broker, conformance.EARLIEST)
        sub = channel.subscribe(broker, trigger)  # a real Trigger does leave one: the control
        await sub.fetch(1, 0.01)
        await channel.append(broker, [conformance.envelope("e1")], conformance.ALL)
        tail = await channel.tail(broker)
        await channel.append(broker, [conformance.envelope("e2")], conformance.ALL)
        assert await inspect.drain_tail(tail, 1) == ["e2"]
        assert len(await channel.recent(broker, 5)) == 2
        await tail.close()
    with sqlite3.connect(db_path(tmp_path, broker)) as conn:
        rows = conn.execute("SELECT trigger FROM positions").fetchall()
    assert rows == [(trigger.uid,)]
