"""What the embedded log stores and the SQL that stores it: schema, rows, one group, retention.

Why apart from `_sqlite_log`: these are plain functions over a `sqlite3.Connection` with no threads
and no event loop, so the storage rules can be read (and changed) in one place: how an event
becomes a row, how one group transaction applies a batch of queued operations, what retention may
delete, and how SQLite's errors become Channel errors.

Invariants the rest of the embedded channel leans on:
- offsets are `INTEGER PRIMARY KEY AUTOINCREMENT`: never reused, even after retention empties the
  table; write transactions serialize (across processes too), so committed offsets form a prefix;
  rows are deleted from the head only (retention), so the log never has holes;
- `meta.bytes` is the sum of the stored rows' sizes, kept inside the same transactions that change
  the rows, so every process sharing the file agrees on it;
- retention never deletes an event some trigger has not committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import orjson
from kbroker.core.channel import ChannelError, ChannelFull, ChannelUnavailable, Envelope, Record
from kbroker.core.events import CloudEvent

Connect = Callable[[Path, float], sqlite3.Connection]
"""Opens a connection to a database file with a busy timeout (seconds); injectable for tests."""

Row = tuple[str | None, bytes, bytes | None, float, str | None, str | None, int]
"""(key, attributes as JSON, data, arrival, traceparent, tracestate, size) as stored."""

RETENTION_BATCH = 5000  # rows looked at per retention step: keeps each pass short

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    off INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT,
    attrs BLOB NOT NULL,
    data BLOB,
    arrival REAL NOT NULL,
    traceparent TEXT,
    tracestate TEXT,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (trigger TEXT PRIMARY KEY, committed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('bytes', 0), ('probe', 0);
"""
_INSERT = "INSERT INTO events (key, attrs, data, arrival, traceparent, tracestate, size) VALUES "
# Rows per INSERT statement, largest first. Why multi-row VALUES rather than executemany:
# executemany steps once per row, and every step gives up the GIL and must win it back from the
# event loop's thread, up to a switch interval each time; one statement per chunk makes that a
# handful of hand-offs per transaction. Powers of two: a group of n rows takes popcount(n)
# statements (at most 9 below 512), and the distinct statements stay few enough for sqlite3's
# statement cache; 256 rows x 7 parameters is far below SQLite's variable limit.
_CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)
_INSERTS = {n: _INSERT + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * n) for n in _CHUNKS}
_SELECT = (
    "SELECT off, key, attrs, data, arrival, traceparent, tracestate FROM events"
    " WHERE off > ? ORDER BY off LIMIT ?"
)
_END = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
_GROUP_START = (
    "SELECT (SELECT v FROM meta WHERE k = 'bytes'),"
    " coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
)
_COMMIT = (
    "INSERT INTO positions VALUES (?, ?) ON CONFLICT (trigger) DO UPDATE"
    " SET committed = max(committed, excluded.committed)"
)


def default_connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False: pooled
    # reader connections move between executor threads (one user at a time, under a lock).
    return sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )


class LogDamaged(ChannelUnavailable):
    """The broker's database file (or its WAL) is damaged: nothing more is written to it until an
    operator recovers it (`kbroker log salvage`); the broker answers 503 meanwhile."""


_DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_DAMAGE_TEXT = ("malformed", "file is not a database", "database corruption")


def is_damage(err: BaseException) -> bool:
    """Whether a storage error says the file itself is damaged (not busy, full or closed)."""
    if isinstance(err, LogDamaged):
        return True
    if not isinstance(err, sqlite3.DatabaseError):
        return False
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _DAMAGE_CODES:
        return True
    text = str(err)
    return any(t in text for t in _DAMAGE_TEXT)


def translate(err: BaseException) -> ChannelError:
    """A foreign storage error as the Channel error a caller can act on."""
    if isinstance(err, ChannelError):
        return err
    if is_damage(err):
        return LogDamaged(f"embedded log is damaged: {err}")
    code = getattr(err, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == sqlite3.SQLITE_FULL or "database or disk is full" in str(err):
        return ChannelFull(f"embedded log is full: {err}")
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return ChannelUnavailable(f"embedded log is locked: {err}")
    return ChannelUnavailable(f"embedded log unavailable: {err}")


def encode(envelopes: Sequence[Envelope]) -> tuple[list[Row], list[int]]:
    """Rows to insert plus each row's size (what retention_bytes counts)."""
    rows: list[Row] = []
    sizes: list[int] = []
    for env in envelopes:
        ev = env.event
        attrs = orjson.dumps(ev.attributes)
        key = ev.attributes.get("partitionkey")
        size = len(attrs) + len(ev.data or b"") + 64  # 64: row and index overhead, roughly
        rows.append(
            (
                None if key is None else str(key),
                attrs,
                ev.data,
                env.arrival,
                env.traceparent,
                env.tracestate,
                size,
            )
        )
        sizes.append(size)
    return rows, sizes


# --- operations queued to the writer -----------------------------------------------------------

APPEND, COMMIT, INIT, FORGET, PROBE, RETAIN = range(6)


@dataclass(slots=True, eq=False)
class Op:
    """One queued unit of work for the writer (mutable: the writer fills in result or error)."""

    kind: int
    future: asyncio.Future[Any] | None
    rows: list[Row] = field(default_factory=list)
    envelopes: Sequence[Envelope] = ()  # APPEND: the events of `rows`, for the tail cache
    nbytes: int = 0
    sync: bool = False  # needs the WAL fsynced before the future resolves
    trigger: str = ""
    value: int = 0  # COMMIT: offset; INIT: 1 for EARLIEST; RETAIN: 1 when the disk is full
    result: Any = None  # INIT: the start position; APPEND: the offset of its first row
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    name: str  # for messages
    retention_bytes: int
    retention_seconds: float


@dataclass(frozen=True, slots=True)
class Applied:
    """What one group transaction did (counted by the caller once it has committed)."""

    events: int
    retained: int
    end: int  # the log's end offset after the group (0 when nothing was appended)
    nbytes: int = 0  # size of the appended events (as retention_bytes counts it)


# --- connection-level helpers ------------------------------------------------------------------


WAL_LIMIT = 64 * 1024 * 1024


def prepare_writer(
    conn: sqlite3.Connection, busy_timeout: float, wal_limit: int = WAL_LIMIT
) -> int:
    """WAL mode, schema; returns the log's end offset."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    # Only takes effect in a new file (before its first table): lets a full disk get the space
    # of deleted events back (`incremental_vacuum`), which otherwise stays inside the file.
    # Costs a pointer-map page per transaction that allocates pages.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    # Some builds zero every freed page (secure_delete=ON): retention would then write every
    # page it frees to the WAL, which a full disk has no room for. FAST zeroes deleted content
    # only on pages written anyway.
    conn.execute("PRAGMA secure_delete = FAST")
    # Truncate the WAL back to this size after a checkpoint, so a burst does not keep its disk,
    # and checkpoint before it is half that size: on a small disk the WAL must stay well within
    # the reserve that lets a checkpoint run when the disk is full (_sqlite_reserve).
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.execute(f"PRAGMA journal_size_limit = {wal_limit}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {max(16, min(1000, wal_limit // 2 // page))}")
    conn.executescript(SCHEMA)
    return end(conn)


def end(conn: sqlite3.Connection) -> int:
    """The highest offset ever committed (0 for a new log)."""
    return int(conn.execute(_END).fetchone()[0])


def read(conn: sqlite3.Connection, after: int, limit: int) -> list[Record]:
    rows = conn.execute(_SELECT, (after, limit)).fetchall()
    try:
        return [
            Record(0, off, key, Envelope(CloudEvent(orjson.loads(attrs), data), arr, tp, ts))
            for off, key, attrs, data, arr, tp, ts in rows
        ]
    except (orjson.JSONDecodeError, TypeError, ValueError) as err:
        # A row SQLite returns but we cannot decode: its bytes were damaged on disk.
        bad = next((r[0] for r in rows if not _decodes(r[2])), rows[0][0] if rows else after)
        raise LogDamaged(f"embedded log is damaged: event at offset {bad} is unreadable") from err


def _decodes(attrs: object) -> bool:
    try:
        return isinstance(orjson.loads(attrs), dict)  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError):
        return False


def lag(conn: sqlite3.Connection, trigger: str) -> int:
    found = conn.execute("SELECT committed FROM positions WHERE trigger = ?", (trigger,)).fetchone()
    lo, hi = conn.execute("SELECT min(off), max(off) FROM events").fetchone()
    if hi is None:
        return 0
    committed = int(found[0]) if found else 0
    # No holes (module docstring), so counting is a subtraction.
    return max(0, int(hi) - max(committed, int(lo) - 1))


# --- one group transaction ---------------------------------------------------------------------


def apply_group(conn: sqlite3.Connection, batch: list[Op], limits: Limits) -> Applied:
    """Apply `batch` inside the caller's open transaction. Ops refused on their own (quota) get
    `error` set; any exception means the caller must roll the whole group back."""
    # One round trip for both (each sqlite3 call gives up the GIL and must win it back).
    stored, first_end = conn.execute(_GROUP_START).fetchone()
    before = stored
    rows: list[Row] = []  # consecutive appends go to SQLite in one executemany
    events = retained = added = 0

    def flush() -> None:
        if rows:
            insert(conn, rows)
            rows.clear()

    for op in batch:
        if op.kind == APPEND:
            over = stored + op.nbytes - limits.retention_bytes
            if over > 0:
                flush()
                freed, deleted = retain(conn, over, limits.retention_seconds)
                stored, retained = stored - freed, retained + deleted
                if stored + op.nbytes > limits.retention_bytes:
                    op.error = ChannelFull(
                        f"embedded log {limits.name} holds {stored} bytes of unconsumed events;"
                        f" retention_bytes is {limits.retention_bytes}"
                    )
                    continue
            rows.extend(op.rows)
            op.result = first_end + events + 1
            stored += op.nbytes
            added += op.nbytes
            events += len(op.rows)
            continue
        flush()
        if op.kind == COMMIT:
            conn.execute(_COMMIT, (op.trigger, op.value))
        elif op.kind == INIT:
            start = 0 if op.value else end(conn)
            conn.execute("INSERT OR IGNORE INTO positions VALUES (?, ?)", (op.trigger, start))
            found = conn.execute(
                "SELECT committed FROM positions WHERE trigger = ?", (op.trigger,)
            ).fetchone()
            op.result = int(found[0])
        elif op.kind == FORGET:
            conn.execute("DELETE FROM positions WHERE trigger = ?", (op.trigger,))
        elif op.kind == PROBE:
            conn.execute("UPDATE meta SET v = v + 1 WHERE k = 'probe'")
        elif op.kind == RETAIN:
            # value 1: the disk is full, every committed event may go.
            need = stored if op.value else max(0, stored - limits.retention_bytes)
            freed, deleted = retain(conn, need, limits.retention_seconds)
            stored, retained = stored - freed, retained + deleted
            op.result = freed
    flush()
    if stored != before:
        conn.execute("UPDATE meta SET v = ? WHERE k = 'bytes'", (stored,))
    # Offsets inside one transaction are consecutive (AUTOINCREMENT, no other writer).
    return Applied(events, retained, first_end + events if events else 0, added)


def insert(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Insert `rows` in order (offsets follow the list), in few statements (see _CHUNKS)."""
    done, total = 0, len(rows)
    for size in _CHUNKS:
        sql = _INSERTS[size]
        while total - done >= size:
            conn.execute(sql, list(chain.from_iterable(rows[done : done + size])))
            done += size


def retain(conn: sqlite3.Connection, need_bytes: int, retention_seconds: float) -> tuple[int, int]:
    """Delete head events that every trigger has committed and that are older than
    `retention_seconds` or whose space is needed (`need_bytes`); returns (bytes, events) freed."""
    committed = conn.execute("SELECT min(committed) FROM positions").fetchone()[0]
    # No trigger at all: nobody is going to read the old events (a trigger created later at
    # EARLIEST sees what retention left, as with Kafka).
    bound = int(committed) if committed is not None else end(conn)
    cutoff = time.time() - retention_seconds
    freed = deleted = 0
    while True:
        # Step through the head lazily: an idle pass stops at the first young row.
        cut, looked, stopped = None, 0, False
        cur = conn.execute(
            "SELECT off, arrival, size FROM events WHERE off <= ? ORDER BY off LIMIT ?",
            (bound, RETENTION_BATCH),
        )
        for off, arrival, size in cur:
            looked += 1
            if arrival >= cutoff and freed >= need_bytes:
                stopped = True
                break
            cut, freed, deleted = off, freed + size, deleted + 1
        cur.close()
        if cut is None:
            break
        conn.execute("DELETE FROM events WHERE off <= ?", (cut,))
        if stopped or looked < RETENTION_BATCH:
            break
    return freed, deleted
