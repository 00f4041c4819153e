"""Recover what is readable from a damaged broker log into a fresh one, keeping every offset.

Why: a damaged log is refused (503) rather than silently losing events, so an operator needs a
way back. Python's sqlite3 has no `.recover`, so this reads the damaged file the slow, careful
way: events by offset range, a range that fails is split in two until the failing single offsets
are known, and each row must also decode; trigger positions likewise by rowid. The new log gets
the same offsets (so triggers resume where they were), a sequence that never reuses an offset,
even one that was lost, and the positions that could be read.

What it refuses to do: run on a log nobody asked it to, or destroy anything. The damaged files
are copied aside first (`<file>.damaged-<UTC timestamp>`, and its WAL as `...-wal` so SQLite
pairs them if someone opens the copy); only then does the fresh log replace the original name.
Stop kbroker first: a writer still holding the old file would keep writing to it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from kbroker.core.channels import _sqlite_check as check
from kbroker.core.channels import _sqlite_store as store

CHUNK = 1000  # offsets per range read before splitting
_EVENTS = (
    "SELECT off, key, attrs, data, arrival, traceparent, tracestate, size FROM events"
    " WHERE off BETWEEN ? AND ? ORDER BY off"
)
_POSITIONS = "SELECT rowid, trigger, committed FROM positions WHERE rowid BETWEEN ? AND ?"


@dataclass
class Salvaged:
    """What `salvage` did."""

    copy: Path  # the damaged file, kept
    recovered: int = 0  # events in the new log
    first: int = 0  # lowest recovered offset (0: none)
    end: int = 0  # the new log's end: no offset up to it is ever reused
    positions: int = 0
    lost: list[tuple[int, int]] = field(default_factory=list)  # offset ranges not recovered
    unreadable_positions: int = 0

    def lost_events(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.lost)


def _read(
    conn: sqlite3.Connection,
    sql: str,
    lo: int,
    hi: int,
    ok: Callable[[tuple[object, ...]], bool],
    bad: list[int],
) -> Iterator[tuple[object, ...]]:
    """Rows with key in [lo, hi]; keys that cannot be read (or fail `ok`) go to `bad`."""
    try:
        rows = conn.execute(sql, (lo, hi)).fetchall()
        if all(ok(r) for r in rows):
            yield from rows
            return
        if lo == hi:
            bad.append(lo)
            return
    except sqlite3.DatabaseError:
        if lo == hi:
            bad.append(lo)
            return
    mid = (lo + hi) // 2
    yield from _read(conn, sql, lo, mid, ok, bad)
    yield from _read(conn, sql, mid + 1, hi, ok, bad)


def _scalar(conn: sqlite3.Connection, sql: str) -> int:
    try:
        row = conn.execute(sql).fetchone()
    except sqlite3.DatabaseError:
        return 0
    return int(row[0]) if row and row[0] is not None else 0


def _decodes(row: tuple[object, ...]) -> bool:
    try:
        return isinstance(orjson.loads(row[2]), dict)  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError):
        return False


def salvage(db: Path, now: float | None = None) -> Salvaged:
    """Copy `db` (and its WAL) aside, rebuild it from every readable event and position."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    copy = Path(f"{db}.damaged-{stamp}")
    shutil.copy2(db, copy)
    if Path(f"{db}-wal").exists():
        shutil.copy2(f"{db}-wal", f"{copy}-wal")
    result = Salvaged(copy)
    marker = check.read_marker(db) or 0
    with tempfile.TemporaryDirectory(dir=db.parent, prefix=".salvage-") as tmp:
        # Read a scratch copy: opening the damaged file itself would replay and reset its WAL.
        scratch = Path(tmp) / "old.db"
        shutil.copy2(copy, scratch)
        if Path(f"{copy}-wal").exists():
            shutil.copy2(f"{copy}-wal", f"{scratch}-wal")
        new = Path(tmp) / "new.db"
        old = sqlite3.connect(scratch, isolation_level=None)
        try:
            _rebuild(old, new, marker, result)
        finally:
            old.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.replace(new, db)
    check.write_marker(db, result.end)
    return result


def _rebuild(old: sqlite3.Connection, new_path: Path, marker: int, result: Salvaged) -> None:
    top_pos = max(_scalar(old, "SELECT max(rowid) FROM positions"), 10_000)
    bad_pos: list[int] = []
    positions = [
        (str(r[1]), int(r[2]))  # type: ignore[call-overload]
        for r in _read(old, _POSITIONS, 1, top_pos, lambda r: isinstance(r[1], str), bad_pos)
    ]
    end = max(
        marker,
        _scalar(old, "SELECT seq FROM sqlite_sequence WHERE name = 'events'"),
        _scalar(old, "SELECT max(off) FROM events"),
        max((c for _, c in positions), default=0),
    )
    floor = min((c for _, c in positions), default=0)  # below it every trigger has committed
    new = sqlite3.connect(new_path, isolation_level=None)
    try:
        store.prepare_writer(new, 5.0)
        new.execute("BEGIN")
        stored = recovered = 0
        lost: list[tuple[int, int]] = []
        expect = floor + 1  # the next offset some trigger still needs
        bad: list[int] = []
        for lo in range(1, end + 1, CHUNK):
            rows = list(_read(old, _EVENTS, lo, min(end, lo + CHUNK - 1), _decodes, bad))
            if rows:
                new.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            for row in rows:
                off = int(row[0])  # type: ignore[call-overload]
                if recovered == 0:
                    result.first = off
                    if not positions:  # nobody's position: the head may simply be retained
                        expect = off
                if off > expect:
                    lost.append((expect, off - 1))
                expect = max(expect, off + 1)
                stored += int(row[7])  # type: ignore[call-overload]
                recovered += 1
        if end >= expect and (recovered or positions):
            lost.append((expect, end))
        new.execute("DELETE FROM sqlite_sequence WHERE name = 'events'")
        new.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (end,))
        new.executemany("INSERT OR REPLACE INTO positions VALUES (?, ?)", positions)
        new.execute("UPDATE meta SET v = ? WHERE k = 'bytes'", (stored,))
        new.execute("COMMIT")
        new.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        new.close()
    result.recovered, result.end, result.positions = recovered, end, len(positions)
    result.lost = lost
    result.unreadable_positions = len(bad_pos)
