"""Reading an embedded log without being a Trigger: its last N events, and a tail from its end.

Neither writes anything: no position row is created (a Trigger's reader queues an INIT on the
writer), so opening a tail costs the log nothing and leaves nothing behind. Both read through the
log's own reader connections and tail cache, on the channel's read threads.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from kbroker.core.channel import ChannelUnavailable, Record
from kbroker.core.channels import _sqlite_log as sqlite_log
from kbroker.core.channels import _sqlite_store as store

_FIRST_OF_LAST = "SELECT min(off) FROM (SELECT off FROM events ORDER BY off DESC LIMIT ?)"


def _recent(log: sqlite_log.SqliteLog, limit: int) -> list[Record]:
    with log._reader() as conn:
        first = conn.execute(_FIRST_OF_LAST, (limit,)).fetchone()[0]
        if first is None:
            return []
        return store.read(conn, int(first) - 1, limit)


async def recent(log: sqlite_log.SqliteLog, limit: int, pool: Executor | None) -> list[Record]:
    if limit <= 0:
        return []
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(pool, _recent, log, limit)
    except RuntimeError as err:  # the channel closed its executor under us
        raise ChannelUnavailable("embedded channel is closed") from err


class SqliteTail:
    """A cursor over one log starting at its end; closing it is forgetting it."""

    def __init__(self, log: sqlite_log.SqliteLog, cursor: int, pool: Executor | None) -> None:
        self._log = log
        self._cursor = cursor
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(cls, log: sqlite_log.SqliteLog, pool: Executor | None) -> SqliteTail:
        loop = asyncio.get_running_loop()
        try:
            end = await loop.run_in_executor(pool, log._read_end)
        except RuntimeError as err:
            raise ChannelUnavailable("embedded channel is closed") from err
        return cls(log, max(end, log.end), pool)

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._closed:
            if self._log.closed:
                raise ChannelUnavailable(
                    "embedded log is closed (channel closed or broker deleted)"
                )
            wake = self._log.wake  # taken before reading, so an append in between is not missed
            if self._log.end > self._cursor:
                records = self._log.cached(self._cursor, max_records)
                if not records:
                    try:
                        records = await loop.run_in_executor(
                            self._pool, self._log.read, self._cursor, max_records
                        )
                    except RuntimeError as err:
                        raise ChannelUnavailable("embedded channel is closed") from err
                if records:
                    self._cursor = records[-1].offset
                    return records
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._log.ensure_poller(self._pool)  # other processes' appends also set `wake`
            try:
                async with asyncio.timeout(remaining):
                    await wake.wait()
            except TimeoutError:
                break
        return []

    async def close(self) -> None:
        self._closed = True
