"""One broker's durable log in one SQLite database: schema, group-commit writer, readers, retention.

Why a thread per database: sqlite3 calls block, and the event loop must never wait on a disk. One
writer thread owns the only writing connection of this process; appends, position commits and
retention are queued to it (FIFO) and it applies everything pending as ONE transaction, so N
concurrent appends cost one commit and, for `all`, one fsync (group commit). Futures are resolved
on the loop with a single `call_soon_threadsafe` per transaction. Reads use a small pool of
read-only connections run on the channel's executor; WAL lets them proceed while the writer writes.

Invariants the rest of the module leans on:
- offsets are `INTEGER PRIMARY KEY AUTOINCREMENT`: never reused, even after retention empties the
  table; transactions serialize (across processes too), so committed offsets form a prefix, and
  rows are only ever deleted from the head (retention), so the log has no holes;
- durability: `synchronous=NORMAL` commits reach the WAL (survive a process kill); a transaction
  holding an `all` append runs with `synchronous=FULL`, which fsyncs the WAL before COMMIT returns;
- a failed transaction is rolled back whole and every waiter in it gets the translated error:
  SQLITE_FULL -> ChannelFull, busy/locked beyond busy_timeout -> ChannelUnavailable. SQLite's
  rollback is what makes "disk full" a 507 and never a torn log.

What it refuses to do: decide names or paths (embedded.py does), or interpret events beyond the
`partitionkey` attribute.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from core.channel import ChannelError, ChannelFull, ChannelUnavailable, Envelope, Record
from core.events import CloudEvent

Connect = Callable[[Path, float], sqlite3.Connection]
"""Opens a connection to a database file with a busy timeout (seconds); injectable for tests."""

Row = tuple[str | None, bytes, bytes | None, float, str | None, str | None, int]
"""(key, attributes as JSON, data, arrival, traceparent, tracestate, size) as stored."""

RETENTION_INTERVAL = 1.0  # seconds between background retention passes of an idle-or-busy writer
RETENTION_BATCH = 5000  # rows looked at per retention step: keeps each pass short
MAX_BACKLOG = 100_000  # queued events before append pushes back with ChannelUnavailable

_SCHEMA = """
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
_INSERT = (
    "INSERT INTO events (key, attrs, data, arrival, traceparent, tracestate, size)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_SELECT = (
    "SELECT off, key, attrs, data, arrival, traceparent, tracestate FROM events"
    " WHERE off > ? ORDER BY off LIMIT ?"
)
_END = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"


def default_connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False: pooled
    # reader connections move between executor threads (one user at a time, under a lock).
    return sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )


def translate(err: BaseException) -> ChannelError:
    """A foreign storage error as the Channel error a caller can act on."""
    if isinstance(err, ChannelError):
        return err
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


@dataclass(slots=True)
class Stats:
    """Writer counters (read by tests and metrics; written by the writer thread only)."""

    transactions: int = 0
    synced_transactions: int = 0  # committed with synchronous=FULL: one WAL fsync each
    events: int = 0
    failed_transactions: int = 0
    retained: int = 0  # events deleted by retention


APPEND, COMMIT, INIT, FORGET, PROBE, RETAIN = range(6)


@dataclass(slots=True, eq=False)
class Op:
    """One queued unit of work for the writer (mutable: the writer fills in result or error)."""

    kind: int
    future: asyncio.Future[Any] | None
    rows: list[Row] = field(default_factory=list)
    nbytes: int = 0
    sync: bool = False  # needs the WAL fsynced before the future resolves
    trigger: str = ""
    value: int = 0  # COMMIT: offset; INIT: 1 for EARLIEST
    result: Any = None
    error: BaseException | None = None


class SqliteLog:
    """A broker's database file and the one writer thread that appends to it."""

    def __init__(
        self,
        path: Path,
        *,
        loop: asyncio.AbstractEventLoop,
        connect: Connect,
        busy_timeout: float,
        group_commit_max: int,
        retention_bytes: int,
        retention_seconds: float,
        retention_interval: float = RETENTION_INTERVAL,
    ) -> None:
        self.path = path
        self.stats = Stats()
        self.end = 0  # highest offset known committed (writer and polls raise it, never lower)
        self._loop = loop
        self._connect = connect
        self._busy_timeout = busy_timeout
        self._group_max = max(1, group_commit_max)
        self._retention_bytes = retention_bytes
        self._retention_seconds = retention_seconds
        self._retention_interval = retention_interval
        self._cond = threading.Condition()
        self._pending: deque[Op] = deque()
        self._backlog = 0
        self._stopping = False
        self._conn: sqlite3.Connection | None = None
        self._synchronous_full: bool | None = None
        self._opened = threading.Event()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._wake = asyncio.Event()
        self._last_poll = 0.0
        self._next_retention = time.monotonic() + retention_interval
        self._thread = threading.Thread(
            target=self._run, name=f"kbroker-log-{path.stem}", daemon=True
        )
        self._thread.start()

    # --- loop side ------------------------------------------------------------------------------

    def submit(self, op: Op) -> None:
        """Queue `op` for the writer (never blocks on disk); pushes back when the queue is full."""
        with self._cond:
            if self._stopping:
                raise ChannelUnavailable("embedded log is closing")
            if self._backlog + len(op.rows) > MAX_BACKLOG and op.rows:
                raise ChannelUnavailable("embedded log writer is behind")
            self._pending.append(op)
            self._backlog += len(op.rows)
            self._cond.notify()

    def call(self, kind: int, **kw: Any) -> asyncio.Future[Any]:
        """Submit an op of `kind` and return the future the writer resolves."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        self.submit(Op(kind, fut, **kw))
        return fut

    @property
    def wake(self) -> asyncio.Event:
        """Set (and replaced) after each transaction that appended: take it BEFORE reading."""
        return self._wake

    def _finish(self, ops: list[Op], appended: bool) -> None:
        for op in ops:
            fut = op.future
            if fut is None or fut.done():
                continue
            if op.error is not None:
                fut.set_exception(op.error)
            else:
                fut.set_result(op.result)
        if appended:
            self._notify()

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def poll_end(self, executor: Executor | None) -> None:
        """See appends by OTHER processes: re-read the end at most every ~25 ms per log."""
        now = self._loop.time()
        if now - self._last_poll < 0.025:
            return
        self._last_poll = now
        try:
            end = await self._loop.run_in_executor(executor, self._read_end)
        except ChannelError:
            return  # a fetch must not fail because a poll did; the next read will tell
        if end > self.end:
            self.end = end
            self._notify()

    def stop(self) -> None:
        """Flush what is queued, stop the writer and close every connection (blocking)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # --- reader side (executor threads) --------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        if not self._opened.wait(self._busy_timeout + 1.0):
            raise ChannelUnavailable(f"embedded log {self.path.name} is not open")
        with self._readers_lock:
            conn = self._readers.pop() if self._readers else None
        try:
            if conn is None:
                conn = self._connect(self.path, self._busy_timeout)
                conn.execute("PRAGMA query_only = 1")
            yield conn
        except sqlite3.Error as err:
            if conn is not None:
                conn.close()
                conn = None
            raise translate(err) from err
        finally:
            if conn is not None:
                with self._readers_lock:
                    self._readers.append(conn)

    def _read_end(self) -> int:
        with self._reader() as conn:
            return int(conn.execute(_END).fetchone()[0])

    def read(self, after: int, limit: int) -> list[Record]:
        with self._reader() as conn:
            rows = conn.execute(_SELECT, (after, limit)).fetchall()
        return [
            Record(0, off, key, Envelope(CloudEvent(orjson.loads(attrs), data), arr, tp, ts))
            for off, key, attrs, data, arr, tp, ts in rows
        ]

    def lag(self, trigger: str) -> int:
        with self._reader() as conn:
            row = conn.execute("SELECT committed FROM positions WHERE trigger = ?", (trigger,))
            found = row.fetchone()
            lo, hi = conn.execute("SELECT min(off), max(off) FROM events").fetchone()
        if hi is None:
            return 0
        committed = found[0] if found else 0
        # No holes (see module docstring), so a count is a subtraction.
        return max(0, int(hi) - max(int(committed), int(lo) - 1))

    # --- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (batch := self._take()) is not None:
                if batch:
                    self._apply(batch)
                if time.monotonic() >= self._next_retention:
                    self._next_retention = time.monotonic() + self._retention_interval
                    self._apply([Op(RETAIN, None)])
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _take(self) -> list[Op] | None:
        with self._cond:
            if not self._pending:
                if self._stopping:
                    return None
                self._cond.wait(self._retention_interval)
            batch: list[Op] = []
            events = 0
            while self._pending:
                n = len(self._pending[0].rows)
                if batch and events + n > self._group_max:
                    break
                batch.append(self._pending.popleft())
                events += n
            self._backlog -= events
            return batch

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect(self.path, self._busy_timeout)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            self.end = max(self.end, int(conn.execute(_END).fetchone()[0]))
        except BaseException:
            conn.close()
            raise
        self._conn, self._synchronous_full = conn, False
        self._opened.set()
        return conn

    def _apply(self, batch: list[Op]) -> None:
        appended = False
        try:
            conn = self._open()
            sync = any(op.sync for op in batch)
            if sync is not self._synchronous_full:
                conn.execute(f"PRAGMA synchronous = {'FULL' if sync else 'NORMAL'}")
                self._synchronous_full = sync
            conn.execute("BEGIN IMMEDIATE")
            try:
                appended = self._write(conn, batch)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        except Exception as err:  # the writer must never die with waiters queued
            failure = translate(err)
            for op in batch:
                op.error = failure
            appended = False
            self.stats.failed_transactions += 1
            if not isinstance(err, sqlite3.OperationalError) and self._conn is not None:
                # Not a transient condition: reopen from scratch on the next batch.
                self._conn.close()
                self._conn = None
        else:
            self.stats.transactions += 1
            self.stats.synced_transactions += int(sync)
            if appended:
                self.end = max(self.end, int(conn.execute(_END).fetchone()[0]))
        waiters = [op for op in batch if op.future is not None]
        if waiters or appended:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._finish, waiters, appended)

    def _write(self, conn: sqlite3.Connection, batch: list[Op]) -> bool:
        stored = before = int(conn.execute("SELECT v FROM meta WHERE k = 'bytes'").fetchone()[0])
        appended = False
        events = 0
        for op in batch:
            if op.kind == APPEND:
                over = stored + op.nbytes - self._retention_bytes
                if over > 0:
                    stored -= self._retain(conn, over)
                    if stored + op.nbytes > self._retention_bytes:
                        op.error = ChannelFull(
                            f"embedded log {self.path.name} holds {stored} bytes of unconsumed"
                            f" events; retention_bytes is {self._retention_bytes}"
                        )
                        continue
                conn.executemany(_INSERT, op.rows)
                stored += op.nbytes
                events += len(op.rows)
                appended = True
            elif op.kind == COMMIT:
                conn.execute(
                    "INSERT INTO positions VALUES (?, ?) ON CONFLICT (trigger) DO UPDATE"
                    " SET committed = max(committed, excluded.committed)",
                    (op.trigger, op.value),
                )
            elif op.kind == INIT:
                start = 0 if op.value else int(conn.execute(_END).fetchone()[0])
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
                freed = self._retain(conn, max(0, stored - self._retention_bytes))
                stored -= freed
                op.result = freed
        if stored != before:
            conn.execute("UPDATE meta SET v = ? WHERE k = 'bytes'", (stored,))
        self.stats.events += events
        return appended

    def _retain(self, conn: sqlite3.Connection, need_bytes: int) -> int:
        """Delete head events every trigger has committed that are too old, or whose space an
        append needs; returns the bytes freed. Events nobody has committed are never deleted."""
        committed = conn.execute("SELECT min(committed) FROM positions").fetchone()[0]
        # No trigger at all: nobody will read the old events (a new trigger starting at EARLIEST
        # would see what retention left, as with Kafka).
        bound = int(committed) if committed is not None else int(conn.execute(_END).fetchone()[0])
        cutoff = time.time() - self._retention_seconds
        freed = 0
        deleted = 0
        while True:
            # Step through the head lazily: an idle pass stops at the first young row.
            cut, looked, full_step = None, 0, True
            cur = conn.execute(
                "SELECT off, arrival, size FROM events WHERE off <= ? ORDER BY off LIMIT ?",
                (bound, RETENTION_BATCH),
            )
            for off, arrival, size in cur:
                looked += 1
                if arrival >= cutoff and freed >= need_bytes:
                    full_step = False
                    break
                cut, freed, deleted = off, freed + size, deleted + 1
            cur.close()
            if cut is None:
                break
            conn.execute("DELETE FROM events WHERE off <= ?", (cut,))
            if not full_step or looked < RETENTION_BATCH:
                break
        self.stats.retained += deleted
        return freed
