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

What it refuses to do: guess. The reserve is re-created only when the filesystem really has the
room for it, and appends resume only when there is at least as much again left over (on the disk
or as free pages inside the database file, which new events reuse). Several processes sharing a
data folder (`--processes N`) share the one file, best effort: each keeps its own released flag.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

_log = logging.getLogger(__name__)

NAME = ".kbroker-reserve"
MAX_BYTES = 4 * 1024 * 1024
MIN_BYTES = 64 * 1024


def size_for(total_bytes: int) -> int:
    """The reserve for a filesystem of `total_bytes`: a few MB, but never more than 1/16 of a
    small disk (a 2 MiB tmpfs must still hold events)."""
    return max(MIN_BYTES, min(MAX_BYTES, total_bytes // 16))


class Reserve:
    """The data folder's reserve file; thread-safe (every broker's writer thread shares it)."""

    def __init__(self, data_dir: Path, size: int | None = None) -> None:
        self.path = data_dir / NAME
        self._size = size
        self._lock = threading.Lock()
        self.released = False  # read without the lock on the writer's path (a bool is atomic)

    @property
    def size(self) -> int:
        if self._size is None:
            st = os.statvfs(self.path.parent)
            self._size = size_for(st.f_blocks * st.f_frsize)
        return self._size

    def create(self) -> bool:
        """Make sure the reserve exists (at start); False (and released) when the disk is
        already too full to hold it."""
        with self._lock:
            if self.path.exists() and self.path.stat().st_size >= self.size:
                self.released = False
                return True
            self.released = not self._allocate()
            return not self.released

    def release(self) -> bool:
        """Give the reserve's blocks back to the filesystem (on SQLITE_FULL); True if this call
        released it (the caller logs and retries what must not fail)."""
        with self._lock:
            if self.released:
                return False
            self.released = True
            try:
                self.path.unlink(missing_ok=True)
            except OSError as err:
                _log.error("cannot release the disk reserve %s: %s", self.path, err)
            return True

    def restore(self, free_in_database: int = 0) -> bool:
        """Re-create a released reserve if the disk has room for it and as much again is left
        for new events (free disk space after it plus `free_in_database`, free pages inside the
        caller's database file). True once the reserve is back (appends may resume)."""
        if not self.released:
            return True
        with self._lock:
            if not self.released:
                return True
            try:
                st = os.statvfs(self.path.parent)
            except OSError:
                return False
            free = st.f_bavail * st.f_frsize
            if free < self.size or free - self.size + free_in_database < self.size:
                return False
            if not self._allocate():
                return False
            self.released = False
            _log.warning("disk space is back: reserve %s re-created, appends resume", self.path)
            return True

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
