"""Is a broker's log file whole? Checks run when a log is opened, never per append.

Why: SQLite trusts its files. A damaged database page makes every read of that part fail with
"database disk image is malformed" while the rest keeps working, so a broker looked Ready, took
events with 202 and its triggers never moved again. A damaged WAL is worse: SQLite stops reading
the WAL at the first frame whose checksum does not match and silently drops every transaction
after it, so acknowledged events vanish without an error anywhere, and the next write overwrites
the evidence. So before the writer touches a log (and before SQLite gets to replay its WAL for a
write) these checks look for damage and name what it affects:

- `PRAGMA quick_check` over the database (b-tree structure, page and cell bounds, record order);
- the WAL itself, frame by frame: a frame that fails its checksum while frames AFTER it still
  verify against their own stored checksums and hold commits means committed transactions are
  about to be dropped (a torn tail with no later commit is a transaction that never committed).
  This alone cannot tell damage from the leftovers of a transaction a kill -9 interrupted (its
  first frames overwritten by the next writer, its commit frame left behind), so it decides only
  for a log without an end marker;
- the end marker (`<file>.end`, 8 bytes, rewritten after each appending transaction, no fsync):
  the highest offset this log is known to have committed. A log whose end is lower after opening
  lost offsets end+1..marker, whichever way (truncated WAL, lost frames, restored old copy).

What it cannot see: a flipped byte inside an event's payload that leaves every structure intact
(SQLite keeps no checksum of row contents; a damaged attributes column is caught when the row
fails to decode on read). What it refuses to do: repair, delete or rewrite anything; that is the
operator's explicit `kbroker log salvage`.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

from kbroker.core.channels import _sqlite_store as store

_WAL_MAGIC = (0x377F0682, 0x377F0683)  # little-/big-endian checksums
_WAL_HEADER = 32
_FRAME_HEADER = 24
_SHM_HEADER = 48  # the wal-index header, stored twice at the start of <db>-shm
_MARKER = struct.Struct("<Q")


def marker_path(db: Path) -> Path:
    return Path(f"{db}.end")


def read_marker(db: Path) -> int | None:
    """The end offset recorded by the last writer, or None when there is none (an older log)."""
    try:
        raw = marker_path(db).read_bytes()
    except OSError:
        return None
    if len(raw) != _MARKER.size:
        return None  # torn by a power cut: unknown, not a loss
    return int(_MARKER.unpack(raw)[0])


class EndMarker:
    """The open marker file of a writer: one pwrite per appending transaction, into the page
    cache (a process kill keeps it; after a power cut it may hold an older value, which only
    under-reports)."""

    def __init__(self, db: Path) -> None:
        self._fd = os.open(marker_path(db), os.O_RDWR | os.O_CREAT, 0o600)

    def write(self, end: int) -> None:
        os.pwrite(self._fd, _MARKER.pack(end), 0)

    def close(self) -> None:
        os.close(self._fd)


def write_marker(db: Path, end: int) -> None:
    marker = EndMarker(db)
    try:
        marker.write(end)
    finally:
        marker.close()


@dataclass(frozen=True, slots=True)
class WalScan:
    """What the WAL holds: frames SQLite will replay and, past a damaged frame, what it drops."""

    frames: int = 0  # frames SQLite accepts (current generation, checksums chain)
    committed: int = 0  # of those, up to and including the last commit frame
    bad_frame: int | None = None  # 1-based index of the first frame failing its checksum
    dropped_frames: int = 0  # frames after it that still verify on their own
    dropped_commits: int = 0  # commit frames among them: committed transactions SQLite drops
    bad_header: bool = False
    size: int = 0

    def problem(self) -> str | None:
        if self.bad_header and self.size >= _WAL_HEADER + _FRAME_HEADER:
            return f"WAL header is damaged: all {self.size} bytes of the WAL are ignored"
        if self.bad_frame is not None and self.dropped_commits:
            last = self.bad_frame + self.dropped_frames
            return (
                f"WAL frame {self.bad_frame} fails its checksum: frames {self.bad_frame}-{last}"
                f" holding {self.dropped_commits} committed transaction(s) would be dropped"
            )
        return None


def _checksum(data: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


Accepted = tuple[int, bytes, tuple[int, ...]]
"""(frames, salt bytes, checksum of the last one) from the wal-index header."""


def accepted_frames(db: Path) -> Accepted | None:
    """How many WAL frames SQLite accepted when it last read the WAL (mxFrame in the wal-index
    header of `<db>-shm`, with the salt and checksum it saw), or None when that header is not
    there or not consistent. `scan_wal` trusts it only if salt and checksum match the WAL."""
    try:
        with Path(f"{db}-shm").open("rb") as f:
            raw = f.read(2 * _SHM_HEADER)
    except OSError:
        return None
    if len(raw) < 2 * _SHM_HEADER or raw[:_SHM_HEADER] != raw[_SHM_HEADER:]:
        return None  # being rewritten right now
    version, _unused, _change, is_init, _big, _page, max_frame = struct.unpack("=IIIBBHI", raw[:20])
    if version != 3007000 or not is_init:
        return None
    return int(max_frame), raw[32:40], struct.unpack("=2I", raw[24:32])


def scan_wal(db: Path, index: Accepted | None = None) -> WalScan:
    """Walk `<db>-wal` the way SQLite's recovery does, and keep going past a bad frame to see
    whether committed transactions lie beyond it. `accepted`: frames SQLite already verified
    (`accepted_frames`), whose checksums need not be computed again (in Python, that is about
    a quarter of a second per 1000 frames)."""
    try:
        data = Path(f"{db}-wal").read_bytes()
    except OSError:
        return WalScan()
    if len(data) < _WAL_HEADER:
        return WalScan(size=len(data))
    magic, _version, page_size, _seq, salt1, salt2, c0, c1 = struct.unpack(">8I", data[:32])
    big = magic == _WAL_MAGIC[1]
    valid_size = page_size >= 512 and page_size & (page_size - 1) == 0 and page_size <= 65536
    if magic not in _WAL_MAGIC or not valid_size:
        return WalScan(bad_header=True, size=len(data))
    if _checksum(data[:24], 0, 0, big) != (c0, c1):
        return WalScan(bad_header=True, size=len(data))
    frame_size = _FRAME_HEADER + page_size
    count = (len(data) - _WAL_HEADER) // frame_size
    accepted = 0
    if index is not None and index[1] == data[16:24] and 0 < index[0] <= count:
        at = _WAL_HEADER + (index[0] - 1) * frame_size
        if struct.unpack(">2I", data[at + 16 : at + 24]) == index[2]:
            accepted = index[0]  # the same WAL SQLite read: its verdict on these frames stands
    s = (c0, c1)
    frames = committed = 0
    bad: int | None = None
    dropped = dropped_commits = 0
    for i in range(count):
        at = _WAL_HEADER + i * frame_size
        _pgno, commit, f1, f2, k0, k1 = struct.unpack(">6I", data[at : at + 24])
        if (f1, f2) != (salt1, salt2):
            break  # a frame of an older generation: the end of this one
        if i < accepted:
            ok = True
        else:
            body = data[at : at + 8] + data[at + 24 : at + frame_size]
            ok = _checksum(body, *s, big) == (k0, k1)
        if bad is None and ok:
            frames = i + 1
            committed = i + 1 if commit else committed
        elif bad is None:
            bad = i + 1
        elif ok:  # past the damage: verifies against the previous frame's stored checksum
            dropped += 1
            dropped_commits += int(commit != 0)
        s = (k0, k1)
    return WalScan(frames, committed, bad, dropped, dropped_commits, False, len(data))


def _problems(conn: sqlite3.Connection, name: str) -> list[str]:
    try:
        rows = conn.execute(f"PRAGMA {name}").fetchall()
    except sqlite3.DatabaseError as err:
        if not store.is_damage(err):
            raise  # busy or locked: not a verdict on the file
        return [f"{name}: {err}"]
    found = [str(r[0]).replace("*** in database main ***\n", "") for r in rows]
    return [] if found == ["ok"] else [f"{name}: {text}" for text in found]


def log_end(conn: sqlite3.Connection) -> int:
    """The log's end as SQLite sees it (0 for a file without the schema yet)."""
    has = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).fetchone()
    return store.end(conn) if has else 0


def open_read_only(db: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection that cannot change the files: unlike a read-write one, closing the last
    connection does not checkpoint the WAL into the database and delete it, which would fold a
    damaged WAL's valid prefix in and destroy the evidence of what it dropped."""
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", timeout=busy_timeout, uri=True)


def inspect(db: Path, busy_timeout: float, full: bool = False) -> list[str]:
    """Every problem found with `db` (empty: whole), without writing to it. `full` runs
    `integrity_check` (also indexes; slower) instead of `quick_check`. Raises sqlite3.Error for
    what says nothing about the file (busy, locked, unreadable directory)."""
    marker = read_marker(db)  # before SQLite opens the file: anything it names is committed
    if not db.exists():
        problem = scan_wal(db).problem()
        return [problem] if problem else []
    conn = open_read_only(db, busy_timeout)
    try:
        problems = _problems(conn, "integrity_check" if full else "quick_check")
        # The check made SQLite read the WAL (read only: nothing replayed into the file), so
        # the frames it accepted are known and only the ones after them need checking here.
        wal = scan_wal(db, accepted_frames(db))
        # With an end marker, the marker decides (below): a WAL whose tail fails its checksum
        # after a kill -9 is normal when that tail is a transaction that never returned (a later
        # writer overwrote its first frames, its commit frame survived past them), and SQLite
        # rightly drops it. Only a log that ends below what was acknowledged lost events.
        wal_problem = wal.problem()
        if marker is None and wal_problem:
            problems.insert(0, wal_problem)
        try:
            end = log_end(conn)
        except sqlite3.DatabaseError as err:
            if not store.is_damage(err):
                raise
            problems.append(f"cannot read the log's end: {err}")
            end = None
    finally:
        conn.close()
    if end is not None and marker is not None and marker > end:
        if wal_problem:  # where the acknowledged events went
            problems.append(wal_problem)
        problems.append(
            f"offsets {end + 1}-{marker} are missing: the log was known to end at {marker}"
            f" but its files end at {end} (WAL truncated or damaged)"
        )
    return problems
