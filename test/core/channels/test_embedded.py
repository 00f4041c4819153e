"""EmbeddedChannel: the conformance suite, then what only a durable SQLite log must show.

The crash and fsync tests run a real child process (python -c) on the same data dir:

    test ──spawn──> child: EmbeddedChannel, 16 appenders, prints "try id" / "ack id"
      │                       │ writes <tmp>/conformance.crash.db (+ -wal)
      └── kill -9 ──────────> ✝
      └── reopen the data dir: every "ack" id stored, nothing never "try"-ed, no holes
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fixtures import channel_conformance as conformance
from kbroker.core import contract
from kbroker.core.channel import ChannelFull, ChannelUnavailable, EventTooLarge, Record
from kbroker.core.channels import _sqlite_store
from kbroker.core.channels.embedded import EmbeddedChannel, db_path
from kbroker.core.settings import EmbeddedSettings

EARLIEST, LATEST = conformance.EARLIEST, conformance.LATEST
envelope, ids = conformance.envelope, conformance.ids
REPO = Path(__file__).resolve().parents[3]
ALL, LEADER, NONE = contract.Durability.ALL, contract.Durability.LEADER, contract.Durability.NONE
QUIET = 3600.0  # retention interval for tests that must not see a background retention pass


@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
async def test_conformance(check: conformance.Check, tmp_path: Path) -> None:
    settings = EmbeddedSettings(data_dir=tmp_path, busy_timeout=1.0)
    await check(lambda: EmbeddedChannel(settings))
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("kbroker-log")]
    assert not leaked, f"close() left threads running: {leaked}"


async def read_all(ch: EmbeddedChannel, b: contract.Broker) -> list[Record]:
    """Everything stored, through a fresh EARLIEST trigger."""
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    out: list[Record] = []
    while batch := await sub.fetch(1000, 0.2):
        out.extend(batch)
    await sub.close()
    return out


def count_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


@pytest.mark.parametrize(
    ("topic", "namespace", "name", "expected"),
    [
        ("", "default", "main", "default.main.db"),
        ("knative-broker-ns-b", "ns", "b", "knative-broker-ns-b.db"),
        ("../etc/passwd", "ns", "b", None),
        ("a/b", "ns", "x", None),
    ],
    ids=["namespace-name", "topic", "dot-dot", "slash"],
)
def test_db_path_stays_in_data_dir(
    topic: str, namespace: str, name: str, expected: str | None, tmp_path: Path
) -> None:
    b = contract.Broker(namespace=namespace, name=name, uid="u", address="", topic=topic)
    path = db_path(tmp_path, b)
    assert path.parent == tmp_path
    if expected is not None:
        assert path.name == expected
    else:  # sanitised names carry a hash, so "a/b" and "a_b" cannot share a file
        assert "/" not in path.name and not path.name.startswith(".")
        other = contract.Broker(namespace, name, "u", "", topic=topic.replace("/", "_"))
        assert db_path(tmp_path, other) != path


async def test_leader_and_all_are_committed_when_append_returns(tmp_path: Path) -> None:
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path))
    await ch.start()
    b = conformance.make_broker()
    await ch.append(b, [envelope("l1"), envelope("l2")], LEADER)
    assert count_rows(db_path(tmp_path, b)) == 2  # an independent connection sees them
    await ch.append(b, [envelope("a1")], ALL)
    assert count_rows(db_path(tmp_path, b)) == 3
    await ch.close()


async def test_close_flushes_none_appends(tmp_path: Path) -> None:
    settings = EmbeddedSettings(data_dir=tmp_path)
    b = conformance.make_broker()
    ch = EmbeddedChannel(settings)
    await ch.start()
    for i in range(200):
        await ch.append(b, [envelope(f"n{i}")], NONE)
    await ch.close()
    ch = EmbeddedChannel(settings)
    await ch.start()
    assert ids(await read_all(ch, b)) == [f"n{i}" for i in range(200)]
    await ch.close()


async def test_group_commit_shares_transactions_and_fsyncs(tmp_path: Path) -> None:
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path), retention_interval=QUIET)
    await ch.start()
    b = conformance.make_broker()
    await ch.ensure_broker(b)
    before = ch.stats(b)
    await asyncio.gather(*(ch.append(b, [envelope(f"c{i}")], ALL) for i in range(64)))
    grouped = ch.stats(b)
    assert grouped.events - before.events == 64
    assert 1 <= grouped.synced_transactions - before.synced_transactions <= 8
    for i in range(5):  # one at a time: nothing to group with, one synced transaction each
        await ch.append(b, [envelope(f"s{i}")], ALL)
    assert ch.stats(b).synced_transactions - grouped.synced_transactions == 5
    await ch.append(b, [envelope("leader")], LEADER)  # no fsync for leader
    assert ch.stats(b).synced_transactions - grouped.synced_transactions == 5
    await ch.close()


_FSYNC_CHILD = """
import asyncio, sys, time
from pathlib import Path
from kbroker.core import contract
from kbroker.core.channel import Envelope
from kbroker.core.channels.embedded import EmbeddedChannel
from kbroker.core.events import CloudEvent
from kbroker.core.settings import EmbeddedSettings

async def main(data: str, concurrent: bool) -> None:
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=Path(data)), retention_interval=3600)
    await ch.start()
    b = contract.Broker(namespace="ns", name="fsync", uid="u", address="http://x/")
    await ch.ensure_broker(b)
    def env(i: int) -> Envelope:
        attrs = {"specversion": "1.0", "id": str(i), "source": "/s", "type": "t"}
        return Envelope(CloudEvent(attrs, b"x" * 1024), arrival=time.time())
    all_ = contract.Durability.ALL
    if concurrent:
        await asyncio.gather(*(ch.append(b, [env(i)], all_) for i in range(64)))
    else:
        for i in range(64):
            await ch.append(b, [env(i)], all_)
    await ch.close()

asyncio.run(main(sys.argv[1], sys.argv[2] == "concurrent"))
"""


def count_fsyncs(tmp_path: Path, mode: str) -> int:
    """Run the child under strace and count the fsync-family calls it made."""
    out = tmp_path / f"strace-{mode}.txt"
    cmd = ["strace", "-f", "-qq", "-c", "-o", str(out), "-e", "trace=fsync,fdatasync"]
    cmd += [sys.executable, "-c", _FSYNC_CHILD, str(tmp_path / mode), mode]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=60)
    if proc.returncode != 0:
        if b"ptrace" in proc.stderr or b"Operation not permitted" in proc.stderr:
            pytest.skip("strace cannot trace here")
        raise AssertionError(proc.stderr.decode())
    total = 0
    for line in out.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in ("fsync", "fdatasync"):
            total += int(parts[3] if len(parts) >= 6 else parts[-2])
    return total


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to count fsync calls")
def test_all_fsyncs_once_per_group_not_per_event(tmp_path: Path) -> None:
    """The kernel's own count: 64 sequential `all` appends fsync at least 64 times (so `all`
    really syncs), 64 concurrent ones far fewer (so they share groups)."""
    sequential = count_fsyncs(tmp_path, "sequential")
    concurrent = count_fsyncs(tmp_path, "concurrent")
    assert sequential >= 64, sequential
    assert concurrent <= 24, (concurrent, sequential)


_CRASH_CHILD = """
import asyncio, sys, time
from pathlib import Path
from kbroker.core import contract
from kbroker.core.channel import Envelope
from kbroker.core.channels.embedded import EmbeddedChannel
from kbroker.core.events import CloudEvent
from kbroker.core.settings import EmbeddedSettings

async def main(data: str) -> None:
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=Path(data)))
    await ch.start()
    b = contract.Broker(namespace="ns", name="crash", uid="u", address="http://x/")
    await ch.ensure_broker(b)
    out = sys.stdout

    async def producer(p: int) -> None:
        i = 0
        while True:
            eid = f"{p}-{i}"
            attrs = {"specversion": "1.0", "id": eid, "source": "/s", "type": "t"}
            out.write(f"try {eid}\\n")
            out.flush()
            env = Envelope(CloudEvent(attrs, b"x" * 1024), arrival=time.time())
            await ch.append(b, [env], contract.Durability.ALL)
            out.write(f"ack {eid}\\n")
            out.flush()
            i += 1

    await asyncio.gather(*(producer(p) for p in range(16)))

asyncio.run(main(sys.argv[1]))
"""


async def test_all_survives_kill_9(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASH_CHILD, str(tmp_path), cwd=REPO, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    lines: list[str] = []
    acks = 0
    deadline = time.monotonic() + 20
    while acks < 500 and time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line, "child exited early"
        lines.append(line.decode())
        acks += line.startswith(b"ack ")
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: appends are in flight right now
    rest, _ = await proc.communicate()
    lines.extend(rest.decode().splitlines(keepends=True))
    assert proc.returncode == -signal.SIGKILL
    tried = {ln.split()[1] for ln in lines if ln.startswith("try ") and ln.endswith("\n")}
    acked = {ln.split()[1] for ln in lines if ln.startswith("ack ") and ln.endswith("\n")}
    assert len(acked) >= 500

    path = db_path(tmp_path, contract.Broker("ns", "crash", "u", ""))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path))
    await ch.start()
    stored = ids(await read_all(ch, contract.Broker("ns", "crash", "u", "")))
    await ch.close()
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert acked <= set(stored), f"acknowledged but lost: {sorted(acked - set(stored))[:10]}"
    assert set(stored) <= tried, f"stored but never sent: {sorted(set(stored) - tried)[:10]}"
    for p in range(16):  # each producer awaited every append: its stored ids are a prefix
        mine = [int(x.split("-")[1]) for x in stored if x.startswith(f"{p}-")]
        assert mine == list(range(len(mine))), (p, mine[:20])


async def test_disk_full_is_channel_full_then_recovers(tmp_path: Path) -> None:
    connections: list[sqlite3.Connection] = []

    def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
        conn = _sqlite_store.default_connect(path, busy_timeout)
        connections.append(conn)
        return conn

    settings = EmbeddedSettings(data_dir=tmp_path)
    ch = EmbeddedChannel(settings, connect=connect, retention_interval=QUIET)
    await ch.start()
    b = conformance.make_broker()
    await ch.ensure_broker(b)
    writer = connections[0]  # opened by ensure_broker on the (now idle) writer thread
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    # A real SQLITE_FULL from SQLite's pager, as on a full disk, without filling the disk.
    writer.execute(f"PRAGMA max_page_count = {pages + 30}")
    acked: list[str] = []
    with pytest.raises(ChannelFull):
        for i in range(1000):
            batch = [envelope(f"f{i}-{j}", size=1024) for j in range(5)]
            await ch.append(b, batch, ALL)
            acked.extend(e.event.id for e in batch)
    assert acked, "the database should take some events before it is full"
    with pytest.raises(ChannelFull):  # still full: still a clean 507, nothing half-written
        await ch.append(b, [envelope("still-full", size=4096)], LEADER)
    assert ids(await read_all(ch, b)) == acked

    writer.execute("PRAGMA max_page_count = 1000000")  # space freed
    await ch.append(b, [envelope("after", size=1024)], ALL)
    assert ids(await read_all(ch, b)) == [*acked, "after"]
    await ch.close()
    with sqlite3.connect(db_path(tmp_path, b)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_locked_database_is_unavailable_within_busy_timeout(tmp_path: Path) -> None:
    settings = EmbeddedSettings(data_dir=tmp_path, busy_timeout=0.3)
    ch = EmbeddedChannel(settings, retention_interval=QUIET)
    await ch.start()
    b = conformance.make_broker()
    await ch.ensure_broker(b)
    blocker = sqlite3.connect(db_path(tmp_path, b), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        start = time.monotonic()
        with pytest.raises(ChannelUnavailable):
            await ch.append(b, [envelope("refused")], LEADER)
        assert 0.25 <= time.monotonic() - start < 2.0
        assert not await ch.healthy()
        start = time.monotonic()
        await ch.append(b, [envelope("queued")], NONE)  # none: acknowledged from memory
        assert time.monotonic() - start < 0.2
        await asyncio.sleep(0.05)
    finally:
        blocker.execute("ROLLBACK")  # released within the writer's busy wait
        blocker.close()
    await ch.append(b, [envelope("later")], ALL)
    assert await ch.healthy()
    assert ids(await read_all(ch, b)) == ["queued", "later"]
    await ch.close()


async def test_writers_take_turns_through_the_lock_file(tmp_path: Path) -> None:
    """Another process's writer holding `<file>.lock` makes ours wait for it (kernel hand-over,
    no SQLite busy sleeps), and its group grows meanwhile: one transaction for what queued up."""
    single = EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path / "one"))
    await single.start()
    await single.append(conformance.make_broker(), [envelope("alone")], LEADER)
    assert not list((tmp_path / "one").glob("*.lock"))  # one process: no lock file, no flock
    await single.close()
    settings = EmbeddedSettings(data_dir=tmp_path, shared_writers=True)
    ch = EmbeddedChannel(settings, retention_interval=QUIET)
    await ch.start()
    b = conformance.make_broker()
    await ch.append(b, [envelope("first")], LEADER)  # opens the log and its lock file
    lock_file = Path(f"{db_path(tmp_path, b)}.lock")
    fd = os.open(lock_file, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a separate open file: conflicts like another process
    try:
        before = ch.stats(b).transactions
        waiting = asyncio.gather(*(ch.append(b, [envelope(f"w{i}")], LEADER) for i in range(20)))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # held back by the lock, not failed
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    start = time.monotonic()
    await waiting
    assert time.monotonic() - start < 1.0  # handed over at once, no busy-handler back-off
    assert ch.stats(b).transactions - before <= 2  # the queued appends went in together
    assert ids(await read_all(ch, b)) == ["first", *[f"w{i}" for i in range(20)]]
    await ch.delete_broker(b)
    assert not lock_file.exists()
    await ch.close()


async def test_retention_deletes_only_what_every_trigger_committed(tmp_path: Path) -> None:
    settings = EmbeddedSettings(data_dir=tmp_path, retention_seconds=0.0)  # all events "old"
    ch = EmbeddedChannel(settings, retention_interval=QUIET)
    await ch.start()
    b = conformance.make_broker()
    ta, tb = conformance.make_trigger(b, EARLIEST), conformance.make_trigger(b, EARLIEST)
    sa, sb = ch.subscribe(b, ta), ch.subscribe(b, tb)
    await ch.append(b, [envelope(f"e{i}") for i in range(1, 11)], ALL)
    got = await conformance.drain(sa, 10)
    await conformance.drain(sb, 10)
    await sa.commit(0, got[7].offset)  # A done with e1..e8
    await sb.commit(0, got[4].offset)  # B done with e1..e5
    assert await ch.run_retention(b) > 0
    assert ch.stats(b).retained == 5
    assert await sb.lag() == 5 and await sa.lag() == 2
    await sb.close()
    resumed = ch.subscribe(b, tb)  # B restarts: its unconsumed events are all still there
    assert ids(await conformance.drain(resumed, 5)) == [f"e{i}" for i in range(6, 11)]
    await resumed.commit(0, got[9].offset)
    await ch.run_retention(b)
    assert ch.stats(b).retained == 8  # bounded by A now
    await ch.delete_subscription(b, ta)
    await ch.delete_subscription(b, tb)
    await ch.run_retention(b)  # no trigger left: old events go
    assert ch.stats(b).retained == 10
    late = ch.subscribe(b, conformance.make_trigger(b, LATEST))
    await ch.append(b, [envelope("e11")], ALL)
    [record] = await conformance.drain(late, 1)
    assert record.offset > got[9].offset, "offsets are never reused after retention"
    await ch.close()


async def test_size_quota_refuses_unconsumed_then_frees_consumed(tmp_path: Path) -> None:
    settings = EmbeddedSettings(data_dir=tmp_path, retention_bytes=20_000)
    ch = EmbeddedChannel(settings, retention_interval=QUIET)
    await ch.start()
    b = conformance.make_broker()
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    acked = []
    with pytest.raises(ChannelFull):
        for i in range(100):
            await ch.append(b, [envelope(f"q{i}", size=1000)], ALL)
            acked.append(f"q{i}")
    assert 10 <= len(acked) < 20
    with pytest.raises(EventTooLarge):
        await ch.append(b, [envelope("huge", size=30_000)], ALL)
    got = await conformance.drain(sub, len(acked))
    assert ids(got) == acked  # nothing unconsumed was dropped to make room
    await sub.commit(0, got[-1].offset)
    await ch.append(b, [envelope("room", size=1000)], ALL)  # consumed events make way
    assert ids(await conformance.drain(sub, 1)) == ["room"]
    await ch.close()


async def test_appends_from_another_process_are_seen(tmp_path: Path) -> None:
    """Two channels on one data dir stand for two processes: separate connections, no shared
    notification, so the reader must find the other writer's events by polling."""
    settings = EmbeddedSettings(data_dir=tmp_path)
    reader, other = EmbeddedChannel(settings), EmbeddedChannel(settings)
    await reader.start()
    await other.start()
    b = conformance.make_broker()
    sub = reader.subscribe(b, conformance.make_trigger(b, LATEST))
    assert await sub.fetch(10, 0.05) == []
    waiting = asyncio.ensure_future(sub.fetch(10, 5.0))
    await asyncio.sleep(0.1)
    start = time.monotonic()
    await other.append(b, [envelope("from-other")], ALL)
    assert ids(await waiting) == ["from-other"]
    assert time.monotonic() - start < 0.5

    async def produce(ch: EmbeddedChannel, tag: str) -> None:
        for i in range(30):
            await ch.append(b, [envelope(f"{tag}{i}")], LEADER)

    await asyncio.gather(produce(reader, "r"), produce(other, "o"))
    got = await conformance.drain(sub, 60)
    assert sorted(ids(got)) == sorted([f"r{i}" for i in range(30)] + [f"o{i}" for i in range(30)])
    assert [r.offset for r in got] == sorted({r.offset for r in got})
    await reader.close()
    await other.close()


async def test_tail_cache_holds_exactly_what_the_file_holds(tmp_path: Path) -> None:
    """The writer puts what it commits into the tail cache (offsets computed, not read back);
    a second channel on the same files reads the same offsets, keys and events from disk.
    A group refused by the size quota in the middle of the burst must not shift any offset."""
    settings = EmbeddedSettings(data_dir=tmp_path, retention_bytes=400_000)
    writer, other = EmbeddedChannel(settings), EmbeddedChannel(settings)
    await writer.start()
    await other.start()
    b = conformance.make_broker()
    sub = writer.subscribe(b, conformance.make_trigger(b, EARLIEST))

    async def append(i: int) -> None:
        size = 300_000 if i == 7 else 100  # no room for this one: ChannelFull, others stored
        batch = [
            envelope(f"e{i}.{j}", key=f"k{j % 3}" if j else None, size=size)
            for j in range(i % 4 + 1)
        ]
        with contextlib.suppress(ChannelFull):
            await writer.append(b, batch, ALL if i % 2 else LEADER)

    await asyncio.gather(*(append(i) for i in range(40)))
    assert writer.stats(b).transactions < 40  # grouped: several appends per transaction
    cached = await conformance.drain(sub, 96, timeout=2.0)  # 100 events, less the 4 refused
    from_file = await read_all(other, b)
    assert [(r.offset, r.key) for r in cached] == [(r.offset, r.key) for r in from_file]
    assert [r.offset for r in cached] == list(range(1, len(cached) + 1))
    assert "e7.0" not in ids(cached)
    for a, f in zip(cached, from_file, strict=True):
        assert a.envelope.event.attributes == f.envelope.event.attributes
        assert a.envelope.event.data == f.envelope.event.data
        assert (a.envelope.arrival, a.envelope.traceparent) == (
            f.envelope.arrival,
            f.envelope.traceparent,
        )
    await writer.close()
    await other.close()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 255, 256, 257, 511, 1000])
def test_insert_keeps_row_order_across_statement_chunks(n: int) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    _sqlite_store.prepare_writer(conn, 1.0)
    rows: list[_sqlite_store.Row] = [
        (f"k{i}", b"{}", str(i).encode(), float(i), None, None, 66) for i in range(n)
    ]
    _sqlite_store.insert(conn, rows)
    stored = conn.execute("SELECT off, key, data FROM events ORDER BY off").fetchall()
    assert stored == [(i + 1, f"k{i}", str(i).encode()) for i in range(n)]


async def test_delete_broker_removes_its_files(tmp_path: Path) -> None:
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path))
    await ch.start()
    b = conformance.make_broker()
    external = contract.Broker("ns", "ext", "u", "", topic="shared", external_topic=True)
    for x in (b, external):
        await ch.append(x, [envelope("x")], ALL)
    await ch.delete_broker(b)
    await ch.delete_broker(external)  # owned by someone else: kept
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.startswith(db_path(tmp_path, b).name)], names
    assert db_path(tmp_path, external).exists()
    await ch.close()


async def test_closed_channel_refuses_with_channel_errors(tmp_path: Path) -> None:
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path))
    await ch.start()
    b = conformance.make_broker()
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    await ch.append(b, [envelope("x")], ALL)
    await ch.close()
    with pytest.raises(ChannelUnavailable):
        await sub.fetch(10, 1.0)
    with pytest.raises(ChannelUnavailable):
        await ch.append(b, [envelope("y")], ALL)
    with pytest.raises(ChannelUnavailable):
        await sub.commit(0, 1)


_WRITER_CHILD = """
import asyncio, sys, time
from pathlib import Path
from kbroker.core import contract
from kbroker.core.channel import Envelope
from kbroker.core.channels.embedded import EmbeddedChannel
from kbroker.core.events import CloudEvent
from kbroker.core.settings import EmbeddedSettings

async def main(data: str, tag: str) -> None:
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=Path(data), busy_timeout=5.0))
    await ch.start()
    b = contract.Broker(namespace="ns", name="shared", uid="u", address="http://x/")
    levels = [contract.Durability.ALL, contract.Durability.LEADER]

    async def producer(p: int) -> None:
        for i in range(50):
            attrs = {"specversion": "1.0", "id": f"{tag}{p}-{i}", "source": "/s", "type": "t"}
            env = Envelope(CloudEvent(attrs, b"x" * 512), arrival=time.time())
            await ch.append(b, [env], levels[i % 2])

    await asyncio.gather(*(producer(p) for p in range(4)))
    await ch.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_several_processes_append_to_one_log(tmp_path: Path) -> None:
    """Real processes (real file locks between them) writing one broker's log while this one
    reads it: every event once, each producer in order, offsets strictly increasing."""
    b = contract.Broker("ns", "shared", "u", "")
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path))
    await ch.start()
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    await ch.ensure_broker(b)
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER_CHILD, str(tmp_path), tag, cwd=REPO
        )
        for tag in ("a", "b", "c")
    ]
    got = await conformance.drain(sub, 3 * 4 * 50, timeout=20.0)
    assert [await c.wait() for c in children] == [0, 0, 0]
    offsets = [r.offset for r in got]
    assert offsets == sorted(set(offsets))
    names = ids(got)
    assert len(set(names)) == 600
    for prefix in [f"{tag}{p}-" for tag in "abc" for p in range(4)]:
        mine = [x for x in names if x.startswith(prefix)]
        assert mine == [f"{prefix}{i}" for i in range(50)]
    await ch.close()


async def test_backlog_pushes_back_instead_of_growing(tmp_path: Path) -> None:
    """A writer that cannot keep up (here: locked out) makes appends fail fast with 503 once its
    queue is full, rather than queueing without bound at durability `none`."""
    settings = EmbeddedSettings(data_dir=tmp_path, busy_timeout=0.5)
    ch = EmbeddedChannel(settings, retention_interval=QUIET, max_backlog_bytes=4 * 1024 * 1024)
    await ch.start()
    b = conformance.make_broker()
    await ch.ensure_broker(b)
    blocker = sqlite3.connect(db_path(tmp_path, b), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    big = [envelope(f"big{i}", size=64 * 1024) for i in range(8)]
    try:
        with pytest.raises(ChannelUnavailable, match="behind"):
            for _ in range(100):  # 50 MiB offered, at most 4 MiB queued
                await ch.append(b, big, NONE)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await ch.close()


_ENOSPC_CHILD = """
import asyncio, json, sys, time, os
from pathlib import Path
from kbroker.core import contract
from kbroker.core.channel import ChannelFull, ChannelError, Envelope
from kbroker.core.channels.embedded import EmbeddedChannel
from kbroker.core.events import CloudEvent
from kbroker.core.settings import EmbeddedSettings

EARLIEST = contract.StartFrom.EARLIEST

async def main(data: str) -> None:
    d = Path(data)
    filler = d / "filler"
    filler.write_bytes(b"\\0" * (1024 * 1024))  # someone else's file taking half the disk
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=d / "log"), retention_interval=3600)
    await ch.start()
    b = contract.Broker(namespace="ns", name="full", uid="u", address="http://x/")
    await ch.ensure_broker(b)
    def env(i):
        attrs = {"specversion": "1.0", "id": f"e{i}", "source": "/s", "type": "t"}
        return Envelope(CloudEvent(attrs, os.urandom(4096)), arrival=time.time())
    acked, errors = [], []
    for i in range(2000):
        try:
            await ch.append(b, [env(i)], contract.Durability.ALL)
            acked.append(f"e{i}")
        except ChannelError as err:
            errors.append(type(err).__name__)
            if len(errors) >= 3:
                break
    filler.unlink()  # space freed
    await ch.append(b, [env("after")], contract.Durability.ALL)
    t = contract.Trigger("ns", "t", contract.TriggerUid("t"), "full", "", start_from=EARLIEST)
    sub = ch.subscribe(b, t)
    stored = []
    while batch := await sub.fetch(1000, 0.2):
        stored += [r.envelope.event.id for r in batch]
    await ch.close()
    print(json.dumps({"acked": acked, "errors": errors, "stored": stored}))

asyncio.run(main(sys.argv[1]))
"""


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /tmp"],
        capture_output=True,
        timeout=10,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare -rm to mount a tiny tmpfs")
def test_real_enospc_is_channel_full_then_recovers(tmp_path: Path) -> None:
    """A genuinely full filesystem (a 2 MiB tmpfs in a private mount namespace): appends fail
    with ChannelFull, acknowledged events survive, and appends resume once space is freed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    script = f'mount -t tmpfs -o size=2m tmpfs {mnt} && exec {sys.executable} -c "$0" {mnt}'
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, _ENOSPC_CHILD],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    assert result["errors"] == ["ChannelFull"] * 3
    assert len(result["acked"]) >= 10
    assert result["stored"] == [*result["acked"], "eafter"]


async def test_background_retention_ages_out_committed_events(tmp_path: Path) -> None:
    settings = EmbeddedSettings(data_dir=tmp_path, retention_seconds=0.2)
    ch = EmbeddedChannel(settings, retention_interval=0.05)
    await ch.start()
    b = conformance.make_broker()
    sub = ch.subscribe(b, conformance.make_trigger(b, EARLIEST))
    await ch.append(b, [envelope(f"e{i}") for i in range(6)], ALL)
    got = await conformance.drain(sub, 6)
    await sub.commit(0, got[3].offset)
    deadline = time.monotonic() + 5
    while ch.stats(b).retained < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # more passes: the two uncommitted events must stay
    assert ch.stats(b).retained == 4
    assert await sub.lag() == 2
    await ch.close()


async def test_corrupt_database_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    b = conformance.make_broker()
    db_path(tmp_path, b).write_bytes(b"this is not a database" * 100)
    ch = EmbeddedChannel(EmbeddedSettings(data_dir=tmp_path), retention_interval=QUIET)
    await ch.start()
    with pytest.raises(ChannelUnavailable):
        await ch.append(b, [envelope("x")], ALL)
    assert not await ch.healthy()
    await ch.close()
