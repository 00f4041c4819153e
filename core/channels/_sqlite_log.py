"""One broker's log file and the threads around it: the group-commit writer and the readers.

Why a thread per database: sqlite3 calls block, and the event loop must never wait on a disk. One
writer thread owns the only writing connection of this process; appends, position commits and
retention are queued to it (FIFO) and it applies everything pending as ONE transaction, so N
concurrent appends cost one commit and, for `all`, one fsync (group commit). Futures are resolved
on the loop with a single `call_soon_threadsafe` per transaction. Reads use a small pool of
read-only connections run on the channel's executor; WAL lets them proceed while the writer writes.
Recent events are kept decoded in a tail cache shared by the log's readers (`_sqlite_cache`).

Several processes (`kbroker run --processes N`) append to one file. SQLite lets one of them write
at a time and makes the others wait in its busy handler, which sleeps 1, 2, 5, 10 ... ms between
tries: a waiting process lost whole milliseconds per transaction and the holder, always ready with
its next group, won again (2 processes took no more than 1). So with `shared_writers` set, each
writer first takes an exclusive `flock` on `<file>.lock`: the kernel hands the lock over the
moment it is released, the waiter meanwhile gathers a bigger group, and SQLite's own lock is then
always free. A process that dies releases its flock; one that hangs holding it stalls the others'
writers, whose appends then time out as 503s, exactly as a hung SQLite lock holder would make
them. A single process skips the lock: each flock call hands the GIL over and back.

Durability: `synchronous=NORMAL` commits reach the WAL (survive a process kill); a transaction
holding an `all` append runs with `synchronous=FULL`, which fsyncs the WAL before COMMIT returns.
A failed transaction is rolled back whole and every waiter in it gets the translated error
(SQLITE_FULL -> ChannelFull, busy beyond busy_timeout -> ChannelUnavailable): SQLite's rollback is
what makes "disk full" a 507 and never a torn log. The storage rules are in `_sqlite_store`.

Damage: before the writer first writes a file it is checked (`_sqlite_check`); a damaged file, or
one whose reads or writes fail with SQLite's corruption errors, is never touched again by this
process and every operation on it fails fast with LogDamaged (503). Full disk: a transaction that
hits SQLITE_FULL releases the data folder's reserve (`_sqlite_reserve`) and runs again without
its appends, so position commits succeed; appends are refused until the space is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbroker.core.channel import ChannelError, ChannelFull, ChannelUnavailable, Record
from kbroker.core.channels import _sqlite_check as check
from kbroker.core.channels import _sqlite_loss as loss
from kbroker.core.channels import _sqlite_reserve as space
from kbroker.core.channels import _sqlite_store as store
from kbroker.core.channels._sqlite_cache import TailCache

_log = logging.getLogger(__name__)

RETENTION_INTERVAL = 1.0  # seconds between background retention passes
# Queued work before append pushes back with ChannelUnavailable (503): bounds memory when
# producers outrun the disk, mostly at durability `none`, which does not wait for the writer.
MAX_BACKLOG_EVENTS = 100_000
POLL_INTERVAL = 0.05  # seconds: how stale another process's appends may look to a waiting fetch
MAX_BACKLOG_BYTES = 256 * 1024 * 1024
_STOP = store.Op(-1, None)  # queued by stop(): the writer ends after what was queued before it


@dataclass(slots=True)
class Stats:
    """Writer counters (read by tests and metrics; written by the writer thread only)."""

    transactions: int = 0
    synced_transactions: int = 0  # committed with synchronous=FULL: one WAL fsync each
    events: int = 0
    failed_transactions: int = 0
    retained: int = 0  # events deleted by retention


class SqliteLog:
    """A broker's database file and the one writer thread that appends to it."""

    def __init__(
        self,
        path: Path,
        *,
        loop: asyncio.AbstractEventLoop,
        connect: store.Connect,
        busy_timeout: float,
        group_commit_max: int,
        retention_bytes: int,
        retention_seconds: float,
        retention_interval: float = RETENTION_INTERVAL,
        max_backlog_bytes: int = MAX_BACKLOG_BYTES,
        shared_writers: bool = False,
        reserve: space.Reserve | None = None,
    ) -> None:
        self.path = path
        self.damage: str | None = None  # why the file is damaged; then nothing touches it again
        self._reserve = reserve
        self._marker: check.EndMarker | None = None
        self._shared_writers = shared_writers
        self.stats = Stats()
        self.losses = loss.LossReport(str(path))  # `none` appends that failed after their 202
        self.end = 0  # highest offset known committed (writer and polls raise it, never lower)
        self._loop = loop
        self._connect = connect
        self._busy_timeout = busy_timeout
        self._group_max = max(1, group_commit_max)
        self._limits = store.Limits(path.name, retention_bytes, retention_seconds)
        self._retention_interval = retention_interval
        # A SimpleQueue (C) and a plain Lock for the counters, not a Condition: Condition's
        # notify() is Python code, and submit() runs once per request on the event loop.
        self._queue: queue.SimpleQueue[store.Op] = queue.SimpleQueue()
        self._carry: store.Op | None = None  # taken from the queue, left for the next group
        self._lock = threading.Lock()
        self._backlog = 0  # events queued
        self._backlog_bytes = 0
        self._max_backlog_bytes = max_backlog_bytes
        self._stopping = False
        self._conn: sqlite3.Connection | None = None
        self._writers_lock: int | None = None  # fd of <file>.lock (flock; see the docstring)
        self._synchronous_full: bool | None = None
        self._opened = threading.Event()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._wake = asyncio.Event()
        self._last_poll = 0.0
        self._poller: asyncio.Task[None] | None = None
        self._cache = TailCache()
        self._next_retention = time.monotonic() + retention_interval
        self._thread = threading.Thread(
            target=self._run, name=f"kbroker-log-{path.stem}", daemon=True
        )
        self._thread.start()

    # --- loop side ------------------------------------------------------------------------------

    def submit(self, op: store.Op) -> None:
        """Queue `op` for the writer (never blocks on disk); pushes back when the queue is full."""
        with self._lock:  # and put under it too: stop() must not slip in before the put
            if self._stopping:
                raise ChannelUnavailable("embedded log is closing")
            if (op.rows and self._backlog) and (  # an empty queue takes any one batch
                self._backlog + len(op.rows) > MAX_BACKLOG_EVENTS
                or self._backlog_bytes + op.nbytes > self._max_backlog_bytes
            ):
                raise ChannelUnavailable("embedded log writer is behind")
            self._backlog += len(op.rows)
            self._backlog_bytes += op.nbytes
            self._queue.put(op)

    def call(self, kind: int, **kw: Any) -> asyncio.Future[Any]:
        """Submit an op of `kind` and return the future the writer resolves."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        self.submit(store.Op(kind, fut, **kw))
        return fut

    @property
    def closed(self) -> bool:
        return self._stopping

    @property
    def wake(self) -> asyncio.Event:
        """Set (and replaced) after each transaction that appended: take it BEFORE reading."""
        return self._wake

    def _finish(self, ops: list[store.Op], appended: bool) -> None:
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
        except (ChannelError, RuntimeError):  # RuntimeError: the executor was shut down
            return  # a fetch must not fail because a poll did; the next read will tell
        if end > self.end:
            self.end = end
            self._notify()

    def ensure_poller(self, executor: Executor | None) -> None:
        """One task per log re-reads the end every POLL_INTERVAL while the log is open, so waiting
        subscriptions see other processes' appends without each polling on its own (1,000 idle
        triggers would otherwise wake 20,000 times a second)."""
        if self._poller is None or self._poller.done():
            self._poller = self._loop.create_task(self._poll_forever(executor))

    async def _poll_forever(self, executor: Executor | None) -> None:
        while not self._stopping:
            await asyncio.sleep(POLL_INTERVAL)
            await self.poll_end(executor)

    def cancel_poller(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    def stop(self) -> None:
        """Flush what is queued, stop the writer and close every connection (blocking)."""
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._queue.put(_STOP)
        self._thread.join()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # --- reader side (executor threads) --------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        if self.damage is not None:
            raise self._damage_error()
        if self._stopping:  # and never reconnect: that would recreate a deleted broker's file
            raise ChannelUnavailable(f"embedded log {self.path.name} is closed")
        if not self._opened.wait(self._busy_timeout + 1.0):
            if self.damage is not None:
                raise self._damage_error()
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
            failure = store.translate(err)
            if isinstance(failure, store.LogDamaged):
                self._damaged(str(err))
            raise failure from err
        except store.LogDamaged as err:
            self._damaged(str(err))
            raise
        finally:
            if conn is not None:
                with self._readers_lock:
                    self._readers.append(conn)

    def _read_end(self) -> int:
        with self._reader() as conn:
            return store.end(conn)

    def cached(self, after: int, limit: int) -> list[Record]:
        """Up to `limit` records after offset `after` from the tail cache; [] when not cached.
        Never blocks on disk, so the event loop may call it."""
        return self._cache.get(after, limit)

    def read(self, after: int, limit: int) -> list[Record]:
        records = self.cached(after, limit)
        if records:
            return records
        with self._reader() as conn:
            records = store.read(conn, after, limit)
        if records:
            self._cache.extend(records)
        return records

    def lag(self, trigger: str) -> int:
        with self._reader() as conn:
            return store.lag(conn, trigger)

    # --- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (batch := self._take()) is not None:
                if batch:
                    self._apply(batch)
                if time.monotonic() >= self._next_retention:
                    self._next_retention = time.monotonic() + self._retention_interval
                    disk_full = self._reserve is not None and self._reserve.full
                    # On a full disk every committed event goes, whatever its age: the space is
                    # what lets appends resume.
                    self._apply([store.Op(store.RETAIN, None, value=int(disk_full))])
                    if disk_full:
                        self._give_back_space()
        finally:
            self.losses.flush(force=True)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._marker is not None:
                self._marker.close()
                self._marker = None
            if self._writers_lock is not None:
                os.close(self._writers_lock)
                self._writers_lock = None

    def _take(self) -> list[store.Op] | None:
        """The next group: queued ops up to group_commit_max events (the first op whatever its
        size); [] after an idle retention interval; None once stop() was called and everything
        queued before it has been taken."""
        op, self._carry = self._carry, None
        if op is None:
            try:
                op = self._queue.get(timeout=self._retention_interval)
            except queue.Empty:
                return []
        if op is _STOP:
            return None
        batch = [op]
        events, nbytes = len(op.rows), op.nbytes
        while events < self._group_max:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                break
            if op is _STOP or events + len(op.rows) > self._group_max:
                self._carry = op
                break
            batch.append(op)
            events += len(op.rows)
            nbytes += op.nbytes
        with self._lock:
            self._backlog -= events
            self._backlog_bytes -= nbytes
        return batch

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self.damage is not None:
            raise self._damage_error()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Before the first write: a write would replay the WAL and overwrite what it dropped.
        problems = check.inspect(self.path, self._busy_timeout)
        if problems:
            self._damaged("; ".join(problems))
            raise self._damage_error()
        conn = self._connect(self.path, self._busy_timeout)
        try:
            wal_limit = store.WAL_LIMIT
            if self._reserve is not None:
                wal_limit = min(wal_limit, self._reserve.size)
            self.end = max(self.end, store.prepare_writer(conn, self._busy_timeout, wal_limit))
            if self._marker is None:
                self._marker = check.EndMarker(self.path)
            self._marker.write(self.end)
        except BaseException:
            conn.close()
            raise
        if self._shared_writers and self._writers_lock is None:
            self._writers_lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._conn, self._synchronous_full = conn, False
        self._opened.set()
        return conn

    def _damaged(self, why: str) -> None:
        if self.damage is None:
            self.damage = why
            _log.error(
                "embedded log %s is damaged and is left untouched (no more reads or writes; its"
                " broker answers 503): %s. Stop kbroker, then `kbroker log check` and"
                " `kbroker log salvage` recover what is readable.",
                self.path,
                why,
            )

    def _damage_error(self) -> store.LogDamaged:
        return store.LogDamaged(f"embedded log {self.path.name} is damaged: {self.damage}")

    def _locked(self, fn: Callable[[], object]) -> None:
        """Run a write outside the group transactions under the writers' lock (if shared)."""
        lock = self._writers_lock
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            fn()
        finally:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _give_back_space(self) -> None:
        if self._reserve is not None and self._conn is not None and self.damage is None:
            space.give_back(self._conn, self._reserve, self._locked, self.path.name)

    def _apply(self, batch: list[store.Op]) -> None:
        """Run `batch` as one transaction and resolve its futures. On a damaged file nothing
        runs; on a full disk the reserve is released so that commits and retention still run,
        and appends are refused (507) until space is back."""
        todo = batch
        if self.damage is not None:
            failure: ChannelError = self._damage_error()
            for op in batch:
                op.error = failure
            todo = []
        elif self._reserve is not None and self._reserve.full:
            todo = space.runnable_while_full(batch, self._reserve, self._conn, self.path.name)
        applied = store.Applied(0, 0, 0)
        if todo:
            try:
                applied = self._transaction(todo)
            except ChannelFull as err:
                released = self._reserve is not None and space.release_on_full(
                    self._reserve, err, str(self.path)
                )
                rest = [op for op in todo if op.kind != store.APPEND]
                if released or len(rest) < len(todo):
                    # What the appends needed may be what was missing: the rest goes alone.
                    for op in todo:
                        if op.kind == store.APPEND:
                            op.error = err
                    self.stats.failed_transactions += 1
                    applied = self._try_transaction(rest)
                else:
                    self._failed(todo, err)
            except ChannelError as err:
                self._failed(todo, err)
        self.losses.note(batch)
        appended = applied.events > 0
        waiters = [op for op in batch if op.future is not None]
        if waiters or appended:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._finish, waiters, appended)

    def _try_transaction(self, ops: list[store.Op]) -> store.Applied:
        if not ops:
            return store.Applied(0, 0, 0)
        try:
            return self._transaction(ops)
        except ChannelError as err:
            self._failed(ops, err)
            return store.Applied(0, 0, 0)

    def _failed(self, ops: list[store.Op], err: ChannelError) -> None:
        for op in ops:
            op.error = err
        self.stats.failed_transactions += 1

    def _transaction(self, batch: list[store.Op]) -> store.Applied:
        """One group transaction; raises the translated ChannelError (nothing applied)."""
        try:
            conn = self._open()
            sync = any(op.sync for op in batch)
            if sync is not self._synchronous_full:
                conn.execute(f"PRAGMA synchronous = {'FULL' if sync else 'NORMAL'}")
                self._synchronous_full = sync
            lock = self._writers_lock
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)  # releases the GIL while it waits
            try:
                conn.execute("BEGIN IMMEDIATE")
                applied = store.apply_group(conn, batch, self._limits)
                conn.execute("COMMIT")
                if applied.events and self._marker is not None:
                    with contextlib.suppress(OSError):  # a hint for the next open, not a write
                        self._marker.write(applied.end)
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            finally:
                if lock is not None:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        except Exception as err:  # the writer must never die with waiters queued
            failure = store.translate(err)
            if isinstance(failure, store.LogDamaged):
                self._damaged(str(err))
            elif not isinstance(err, (sqlite3.Error, ChannelError)):
                _log.error("embedded log %s: unexpected writer error", self.path, exc_info=err)
            if not isinstance(err, sqlite3.OperationalError) and self._conn is not None:
                # Not a transient condition: reopen from scratch on the next batch.
                self._conn.close()
                self._conn = None
            raise failure from err
        if applied.events:
            self._cache.remember(batch)
            if self._reserve is not None:
                self._reserve.note_appended(applied.nbytes)
        self.stats.transactions += 1
        self.stats.synced_transactions += int(sync)
        self.stats.events += applied.events
        self.stats.retained += applied.retained
        self.end = max(self.end, applied.end)
        return applied
