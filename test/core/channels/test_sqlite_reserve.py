"""The disk reserve: its size, release on SQLITE_FULL, re-creation, and the writer's use of it.

The full-disk case on a real small filesystem runs through `kbroker run` in
test/faults/test_embedded_log_faults.py; here SQLite's own SQLITE_FULL (max_page_count) stands in.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from fixtures import channel_conformance as conformance
from kbroker.core import contract
from kbroker.core.channel import ChannelFull
from kbroker.core.channels import _sqlite_reserve as reserve
from kbroker.core.channels import _sqlite_store
from kbroker.core.channels.embedded import EmbeddedChannel
from kbroker.core.settings import EmbeddedSettings

MB = 1024 * 1024


@pytest.mark.parametrize(
    ("disk", "expected"),
    [(2 * MB, 128 * 1024), (8 * MB, 512 * 1024), (1024 * MB, 8 * MB), (256 * 1024, 64 * 1024)],
    ids=["2MiB", "8MiB", "1GiB", "tiny"],
)
def test_reserve_is_a_few_mb_but_a_small_share_of_a_small_disk(disk: int, expected: int) -> None:
    assert reserve.size_for(disk) == expected


def test_release_then_restore_recreates_the_file(tmp_path: Path) -> None:
    r = reserve.Reserve(tmp_path, size=64 * 1024)
    assert r.create() and r.path.stat().st_size == 64 * 1024 and not r.full
    assert r.release() and r.full and not r.path.exists()
    assert not r.release(), "a second release changes nothing"
    assert r.restore() and not r.full and r.path.stat().st_size == 64 * 1024


async def test_commits_in_a_group_that_hits_sqlite_full_still_succeed(tmp_path: Path) -> None:
    """A position commit queued with appends shares their transaction; when the disk fills,
    the appends get 507 but the commit must not (it is what lets retention free space)."""
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
    sub = ch.subscribe(b, conformance.make_trigger(b, conformance.EARLIEST))
    await ch.append(b, [conformance.envelope("first")], contract.Durability.ALL)
    first = await conformance.drain(sub, 1)
    writer = connections[0]
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count = {pages}")  # the next new page is SQLITE_FULL
    big = [conformance.envelope(f"big{i}", size=8192) for i in range(4)]
    results = await asyncio.gather(
        ch.append(b, big, contract.Durability.ALL),
        sub.commit(0, first[0].offset),
        return_exceptions=True,
    )
    assert isinstance(results[0], ChannelFull)
    assert results[1] is None, f"the commit failed with the appends: {results[1]!r}"
    assert ch.disk_full
    assert await sub.lag() == 0
    writer.execute("PRAGMA max_page_count = 1000000")  # space is back
    await ch.append(b, [conformance.envelope("after")], contract.Durability.ALL)
    assert not ch.disk_full
    await ch.close()
