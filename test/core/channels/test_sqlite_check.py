"""Damaged embedded logs, on real files: found when the log opens, refused with 503, left intact.

append N events ─> close ─> damage a copy (bytes in the db, WAL frames, WAL tail)
                              └─> open a channel on it: LogDamaged names what is lost
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest
from fixtures import channel_conformance as conformance
from kbroker.core import contract
from kbroker.core.channel import ChannelUnavailable
from kbroker.core.channels import _sqlite_check as check
from kbroker.core.channels._sqlite_store import LogDamaged
from kbroker.core.channels.embedded import EmbeddedChannel, db_path
from kbroker.core.settings import EmbeddedSettings

ALL = contract.Durability.ALL
QUIET = 3600.0
envelope = conformance.envelope


def settings(d: Path) -> EmbeddedSettings:
    return EmbeddedSettings(data_dir=d, busy_timeout=1.0)


async def fill(d: Path, b: contract.Broker, n: int, close: bool = True) -> EmbeddedChannel:
    ch = EmbeddedChannel(settings(d), retention_interval=QUIET)
    await ch.start()
    for i in range(n):
        await ch.append(b, [envelope(f"e{i}", size=1000)], ALL)
    if close:
        await ch.close()
    return ch


def flip_middle_page(path: Path) -> None:
    """Overwrite the header of the page in the middle of the file (b-tree structure)."""
    with sqlite3.connect(path) as conn:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = path.stat().st_size // page
    with path.open("r+b") as f:
        f.seek((pages // 2) * page)
        f.write(b"\xff" * 64)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_damaged_database_is_refused_and_left_untouched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b, other = conformance.make_broker(), contract.Broker("ns", "other", "u2", "http://x/")
    await fill(tmp_path, b, 300)
    path = db_path(tmp_path, b)
    flip_middle_page(path)
    before = digest(path)
    ch = EmbeddedChannel(settings(tmp_path), retention_interval=QUIET)
    await ch.start()
    with caplog.at_level(logging.ERROR), pytest.raises(LogDamaged) as err:
        await ch.ensure_broker(b)
    assert "quick_check" in str(err.value) or "page" in str(err.value)
    with pytest.raises(ChannelUnavailable):  # ingress turns this into 503
        await ch.append(b, [envelope("late")], ALL)
    assert ch.damage(b) is not None
    assert not await ch.healthy()
    assert any("is damaged" in r.getMessage() for r in caplog.records)
    # Another broker in the same data folder keeps working.
    await ch.append(other, [envelope("fine")], ALL)
    assert ch.damage(other) is None
    await ch.close()
    assert digest(path) == before, "the damaged file must not be written"


async def test_undecodable_row_marks_the_log_damaged(tmp_path: Path) -> None:
    b = conformance.make_broker()
    await fill(tmp_path, b, 5)
    with sqlite3.connect(db_path(tmp_path, b)) as conn:  # bytes SQLite keeps but we cannot read
        conn.execute("UPDATE events SET attrs = x'00ff' WHERE off = 3")
    ch = EmbeddedChannel(settings(tmp_path), retention_interval=QUIET)
    await ch.start()
    sub = ch.subscribe(b, conformance.make_trigger(b, conformance.EARLIEST))
    with pytest.raises(LogDamaged, match="offset 3"):
        for _ in range(3):
            await sub.fetch(1, 0.2)
    assert ch.damage(b) is not None and not await ch.healthy()
    await ch.close()


async def copy_live(src: Path, dst: Path, b: contract.Broker, n: int) -> Path:
    """Append n events and copy the log's files while the writer is still open, so the copy
    has its recent transactions only in the WAL (as after a crash)."""
    ch = await fill(src, b, n, close=False)
    dst.mkdir()
    path = db_path(src, b)
    for suffix in ("", "-wal", ".end"):
        shutil.copy(f"{path}{suffix}", dst / f"{path.name}{suffix}")
    await ch.close()
    return db_path(dst, b)


def wal_frame(path: Path, index: int) -> int:
    """Byte offset of WAL frame `index` (1-based)."""
    with Path(f"{path}-wal").open("rb") as f:
        header = f.read(32)
    page = int.from_bytes(header[8:12], "big")
    return 32 + (index - 1) * (24 + page)


async def test_bad_wal_frame_before_committed_ones_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b = conformance.make_broker()
    path = await copy_live(tmp_path / "live", tmp_path / "copy", b, 20)
    assert check.scan_wal(path).committed >= 10, "the events should still be in the WAL"
    with Path(f"{path}-wal").open("r+b") as f:
        f.seek(wal_frame(path, 3) + 24 + 100)  # inside frame 3's page
        f.write(b"\x00\x01\x02\x03")
    wal_before = digest(Path(f"{path}-wal"))
    scan = check.scan_wal(path)
    assert scan.bad_frame == 3 and scan.dropped_commits > 0
    ch = EmbeddedChannel(settings(path.parent), retention_interval=QUIET)
    await ch.start()
    with caplog.at_level(logging.ERROR), pytest.raises(LogDamaged) as err:
        await ch.ensure_broker(b)
    text = str(err.value)
    assert "WAL frame 3" in text and "committed transaction" in text
    assert "offsets" in text and "-20 are missing" in text  # the end marker names the range
    assert any("WAL frame 3" in r.getMessage() for r in caplog.records)
    await ch.close()
    assert digest(Path(f"{path}-wal")) == wal_before, "the WAL must not be replayed or reset"


async def test_dropped_wal_tail_that_was_never_acknowledged_is_no_damage(tmp_path: Path) -> None:
    """After a kill -9 the WAL may end in frames of a transaction that never returned (the next
    writer overwrote its first frames; its commit frame is left behind). They fail the checksum
    chain exactly as damage would; the end marker says nothing acknowledged is lost with them,
    so the log opens and serves (a broker refusing every event after a crash is an outage)."""
    b = conformance.make_broker()
    path = await copy_live(tmp_path / "live", tmp_path / "copy", b, 20)
    with Path(f"{path}-wal").open("r+b") as f:
        f.seek(wal_frame(path, 3) + 24 + 100)
        f.write(b"\x00\x01\x02\x03")
    scan = check.scan_wal(path)
    assert scan.bad_frame == 3 and scan.dropped_commits > 0  # looks like damage to the WAL scan
    conn = check.open_read_only(path, 5.0)
    try:
        survives = check.log_end(conn)
    finally:
        conn.close()
    check.write_marker(path, survives)  # the last acknowledged offset is still there
    assert check.inspect(path, 5.0) == []
    ch = EmbeddedChannel(settings(path.parent), retention_interval=QUIET)
    await ch.start()
    await ch.ensure_broker(b)  # no LogDamaged
    await ch.close()


async def test_truncated_wal_names_the_missing_offsets(tmp_path: Path) -> None:
    b = conformance.make_broker()
    path = await copy_live(tmp_path / "live", tmp_path / "copy", b, 20)
    wal = Path(f"{path}-wal")
    with wal.open("r+b") as f:
        f.truncate(wal_frame(path, 4))  # a clean frame boundary: only the marker can tell
    ch = EmbeddedChannel(settings(path.parent), retention_interval=QUIET)
    await ch.start()
    with pytest.raises(LogDamaged, match=r"offsets \d+-20 are missing"):
        await ch.append(b, [envelope("x")], ALL)
    await ch.close()


async def test_whole_log_opens_cleanly_and_keeps_its_marker(tmp_path: Path) -> None:
    b = conformance.make_broker()
    path = await copy_live(tmp_path / "live", tmp_path / "copy", b, 20)
    assert check.inspect(path, 1.0) == []
    assert check.read_marker(path) == 20
    ch = EmbeddedChannel(settings(path.parent), retention_interval=QUIET)
    await ch.start()
    await ch.append(b, [envelope("more")], ALL)  # replays the WAL: all 20 are there
    assert check.read_marker(path) == 21
    assert await ch.healthy()
    await ch.close()


def damage_wal(path: Path, how: str) -> None:
    wal = Path(f"{path}-wal")
    frames = (wal.stat().st_size - 32) // (24 + 4096)
    with wal.open("r+b") as f:
        if how == "header":
            f.seek(8)
            f.write(b"\x00\x00\x00\x07")
        elif how == "middle":
            f.seek(wal_frame(path, 2) + 24 + 10)
            f.write(b"\xde\xad")
        elif how == "tail":  # the last frame torn, as a power cut mid-write can leave it
            f.seek(wal_frame(path, frames) + 24 + 10)
            f.write(b"\xde\xad")


@pytest.mark.parametrize(
    ("how", "problem"),
    [
        ("none", None),
        ("header", "WAL header is damaged"),
        ("middle", "WAL frame 2 fails its checksum"),
        ("tail", None),
    ],
)
async def test_wal_scan_tells_a_dropped_commit_from_a_torn_tail(
    tmp_path: Path, how: str, problem: str | None
) -> None:
    b = conformance.make_broker()
    path = await copy_live(tmp_path / "live", tmp_path / "copy", b, 20)
    damage_wal(path, how)
    found = check.scan_wal(path).problem()
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
    if how == "tail":  # the torn frame held the last commit: only the end marker can tell
        assert any("-20 are missing" in p for p in check.inspect(path, 1.0))
