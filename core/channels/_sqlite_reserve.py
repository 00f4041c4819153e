"""Room kept aside on the data folder's disk so a full disk never locks the log up for good.

Why: on a full disk every SQLite write fails, and that includes the writes that would free space.
A trigger's position commit, retention's DELETE and the checkpoint that folds the WAL back into the
database all append frames to the WAL first; none of them can run, retention (which deletes only
committed events) never frees anything, ingress answers 507 forever and every restart redelivers
the whole backlog from the last position that made it to disk.

So each data folder holds a preallocated file (`.kbroker-reserve`, a few MB, real blocks from
fallocate). The first SQLITE_FULL releases it: the disk then has room for commits, retention and
checkpoints, and appends are refused (507) while it is released so they cannot eat that room.
Once retention has freed space inside the database and the disk has room again, the reserve is
re-created and appends resume, with no restart.

The writer's side of it is here too: which ops run while the disk is full
(`runnable_while_full`), releasing the reserve on SQLITE_FULL (`release_on_full`) and how a full
disk's log returns space (`give_back`).

What it refuses to do: guess. The reserve is re-created only when the filesystem really has the
room for it, and appends resume only when there is at least as much again left over (on the disk
or as free pages inside the database file, which new events reuse). Several processes sharing a
data folder (`--processes N`) share the one file, best effort: each keeps its own released flag.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kbroker.core.channel import ChannelFull
from kbroker.core.channels import _sqlite_store as store

_log = logging.getLogger(__name__)

NAME = ".kbroker-reserve"
MAX_BYTES = 8 * 1024 * 1024
MIN_BYTES = 64 * 1024
VACUUM_BUDGET = 0.5  # seconds per retention pass a full disk's writer spends giving space back


def size_for(total_bytes: int) -> int:
    """The reserve for a filesystem of `total_bytes`: a few MB, but never more than 1/16 of a
    small disk (a 2 MiB tmpfs must still hold events). The WAL is kept within it (the writer's
    journal_size_limit), so a checkpoint on a full disk always has the room it needs."""
    return max(MIN_BYTES, min(MAX_BYTES, total_bytes // 16))


class Reserve:
    """The data folder's reserve file and its "disk full" state; thread-safe (every broker's
    writer thread shares it)."""

    def __init__(self, data_dir: Path, size: int | None = None) -> None:
        self.path = data_dir / NAME
        self._size = size
        self._lock = threading.Lock()
        self.full = False  # appends refused; read without the lock on the writer's path
        self._file = False  # the reserve file is in place
        self._since_check = 0  # bytes appended since the last look at the free space
        self._check_every = MIN_BYTES // 8 if size is None else size // 8

    @property
    def size(self) -> int:
        if self._size is None:
            st = os.statvfs(self.path.parent)
            self._size = size_for(st.f_blocks * st.f_frsize)
            self._check_every = self._size // 8
        return self._size

    def create(self) -> bool:
        """Make sure the reserve exists (at start); False (and full) when the disk is already
        too full to hold it."""
        with self._lock:
            if self.path.exists() and self.path.stat().st_size >= self.size:
                self._file = True
            else:
                self._file = self._allocate()
            self.full = not self._file or self._free() < self.size
            return not self.full

    def note_appended(self, nbytes: int) -> None:
        """Count appended bytes; every eighth of the reserve, look at the free space. Appends
        stop while less than the reserve's size is left beside it: SQLite then still has room
        to checkpoint (which grows the database by what the WAL holds) and to run retention,
        so the reserve file itself is only the second line (another program filling the disk)."""
        # Unlocked: a pacing count, where a lost update between two writers costs nothing.
        self._since_check += nbytes
        if self._since_check < self._check_every or self.full:
            return
        with self._lock:
            self._since_check = 0
            free = self._free()
            if free >= self.size:
                return
            self.full = True
        _log.warning(
            "disk of %s nearly full (%d bytes free): appends get 507 until retention frees space",
            self.path.parent,
            free,
        )

    def release(self) -> bool:
        """SQLITE_FULL: give the reserve's blocks back to the filesystem. True if this call
        changed anything (the caller logs it and retries what must not fail)."""
        with self._lock:
            changed = self._file or not self.full
            self.full = True
            if self._file:
                self._file = False
                try:
                    self.path.unlink(missing_ok=True)
                except OSError as err:
                    _log.error("cannot release the disk reserve %s: %s", self.path, err)
            return changed

    def restore(self, free_in_database: int = 0) -> bool:
        """Leave the full state if the disk has room again: the reserve file back in place and
        at least its size free beside it, twice that counting `free_in_database` (free pages
        inside the caller's database file, which new events reuse). True when appends may run."""
        if not self.full:
            return True
        with self._lock:
            if not self.full:
                return True
            if not self._file:
                if self._free() < self.size or not self._allocate():
                    return False
                self._file = True
            free = self._free()
            if free < self.size or free + free_in_database < 2 * self.size:
                return False
            self.full = False
            self._since_check = 0
        _log.warning("disk space is back under %s: reserve in place, appends resume", self.path)
        return True

    def _free(self) -> int:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def _allocate(self) -> bool:
        tmp = self.path.with_name(NAME + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return False
        return True


def free_pages(conn: sqlite3.Connection) -> int:
    """Bytes of free pages inside the database file, which new events reuse."""
    free, size = conn.execute("SELECT * FROM pragma_freelist_count, pragma_page_size").fetchone()
    return int(free) * int(size)


def give_back(
    conn: sqlite3.Connection,
    reserve: Reserve,
    locked: Callable[[Callable[[], object]], None],
    name: str,
) -> None:
    """On a full disk, after retention (writer thread): give the deleted events' pages back to
    the filesystem, fold the WAL into the database and truncate it, then leave the full state
    if there is room. `locked` runs a write under the writers' lock."""
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # A log made with auto_vacuum gives free pages back to the filesystem: the vacuum
        # writes each page it drops to the WAL, so it goes in steps that fit the reserve,
        # each followed by the checkpoint that cuts the file. An older log keeps its free
        # pages, which new events reuse.
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            vacuum = f"PRAGMA incremental_vacuum({max(8, reserve.size // 4 // page)});"
            deadline = time.monotonic() + VACUUM_BUDGET
            while free_pages(conn) and time.monotonic() < deadline:
                locked(lambda: conn.executescript(vacuum))  # execute() stops at one page
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        reserve.restore(free_pages(conn))
    except sqlite3.Error as err:
        # Not even room to give space back: the reserve file goes too (the next pass retries).
        if isinstance(store.translate(err), ChannelFull) and reserve.release():
            _log.warning(
                "embedded log %s: disk full while freeing space (%s); released the reserve %s",
                name,
                err,
                reserve.path,
            )
        else:
            _log.debug("embedded log %s: freeing space on a full disk: %s", name, err)


def release_on_full(reserve: Reserve, err: ChannelFull, name: str) -> bool:
    """A transaction hit SQLITE_FULL (writer thread): release the reserve so position commits and
    retention can run. True if that changed anything (then the caller retries without appends)."""
    released = reserve.release()
    if released:
        _log.warning(
            "embedded log %s: disk full (%s); released the %d-byte reserve %s so position commits"
            " and retention can run; appends get 507 until space is back",
            name,
            err,
            reserve.size,
            reserve.path,
        )
    return released


def runnable_while_full(
    batch: list[store.Op], reserve: Reserve, conn: sqlite3.Connection | None, name: str
) -> list[store.Op]:
    """The ops of `batch` that may run while the disk is full: all of them once there is room
    again, else everything but appends (which get ChannelFull)."""
    appends = [op for op in batch if op.kind == store.APPEND]
    if not appends:
        return batch
    try:
        free = 0 if conn is None else free_pages(conn)
        if reserve.restore(free):
            return batch
    except sqlite3.Error:
        pass
    full = ChannelFull(f"embedded log {name}: disk full; retry later")
    for op in appends:
        op.error = full
    return [op for op in batch if op.kind != store.APPEND]
