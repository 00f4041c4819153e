"""Events accepted at durability `none` and then lost by a failed write are counted and logged:
a real SQLITE_FULL (the pager's page limit, as on a full disk) under the embedded channel, the
metric read through the channel's stats, and the rate limit of the ERROR lines."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest
from fixtures import channel_conformance as conformance
from kbroker.core import contract
from kbroker.core.channel import ChannelFull
from kbroker.core.channels import _sqlite_loss, _sqlite_store
from kbroker.core.channels.embedded import EmbeddedChannel, db_path
from kbroker.core.metrics import Metrics
from kbroker.core.settings import EmbeddedSettings

NONE = contract.Durability.NONE


async def test_none_appends_lost_on_a_full_disk_are_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    connections: list[sqlite3.Connection] = []

    def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
        conn = _sqlite_store.default_connect(path, busy_timeout)
        connections.append(conn)
        return conn

    ch = EmbeddedChannel(
        EmbeddedSettings(data_dir=tmp_path), connect=connect, retention_interval=3600
    )
    await ch.start()
    b = conformance.make_broker()
    await ch.ensure_broker(b)
    writer = connections[0]
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count = {pages + 30}")
    caplog.set_level(logging.ERROR)
    sent = 0
    for i in range(60):  # each answered at once, as ingress answers 202
        await ch.append(b, [conformance.envelope(f"n{i}-{j}", size=1024) for j in range(5)], NONE)
        sent += 5
        await asyncio.sleep(0.005)  # separate groups, so some commit before the disk fills
    await ch.close()  # flushes the writer's queue and its last loss line

    with sqlite3.connect(db_path(tmp_path, b)) as conn:
        stored = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    assert 0 < stored < sent
    lines = [r for r in caplog.records if "LOST" in r.getMessage()]
    assert lines, "a loss after the 202 must be logged"
    text = lines[0].getMessage()
    assert db_path(tmp_path, b).name in text and "disk_full" in text
    assert f"n{stored // 5}-0" in text  # the first lost event is named
    assert sum(int(r.getMessage().split("LOST ")[1].split()[0]) for r in lines) == sent - stored


async def test_lost_counter_is_a_metric(tmp_path: Path) -> None:
    connections: list[sqlite3.Connection] = []

    def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
        conn = _sqlite_store.default_connect(path, busy_timeout)
        connections.append(conn)
        return conn

    ch = EmbeddedChannel(
        EmbeddedSettings(data_dir=tmp_path), connect=connect, retention_interval=3600
    )
    await ch.start()
    b = conformance.make_broker()
    await ch.ensure_broker(b)
    connections[0].execute("PRAGMA max_page_count = 1")  # nothing more fits
    await ch.append(b, [conformance.envelope(f"m{j}", size=2048) for j in range(4)], NONE)
    with pytest.raises(ChannelFull):  # behind the lost group in the FIFO: it has been applied
        await ch.append(b, [conformance.envelope("sync", size=2048)], contract.Durability.LEADER)
    assert ch.stats(b).lost == {"disk_full": 4}
    metrics = Metrics()
    metrics.watch_channels({"embedded": ch}, lambda: [b], lambda c, br: None)
    text = metrics.render().decode()
    assert (
        f'kbroker_events_lost_total{{broker_name="{b.name}",channel="embedded",'
        f'namespace_name="{b.namespace}",reason="disk_full"}} 4.0'
    ) in text
    await ch.close()


def test_loss_lines_are_rate_limited_and_sum_what_they_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    report = _sqlite_loss.LossReport("x.db", interval=10.0, clock=lambda: now[0])
    caplog.set_level(logging.ERROR)

    def lose(*event_ids: str) -> None:
        envs = [conformance.envelope(i) for i in event_ids]
        op = _sqlite_store.Op(_sqlite_store.APPEND, None, envelopes=envs)
        op.error = ChannelFull("disk full")
        report.note([op, _sqlite_store.Op(_sqlite_store.APPEND, None, envelopes=envs)])

    lose("a", "b")
    now[0] = 1.0
    lose("c", "d", "e", "f")
    lose("g")
    now[0] = 11.0
    report.flush()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "LOST 2 " in messages[0] and "first ids a, b, last id b" in messages[0]
    assert "LOST 5 " in messages[1] and "first ids c, d, e, last id g" in messages[1]
    assert report.lost == {"disk_full": 7}
