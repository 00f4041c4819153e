"""The tail cache of one embedded log: the most recent decoded events, shared by its readers.

Why: with N triggers on one broker the same new rows would be read and decoded N times (the
fan-out cost); the writer also puts what it has just committed here, so triggers following the
tail take new events from memory, with no read, no decoding and no thread hop. Appends by other
processes still come from the file.

What it refuses to do: hold anything but one contiguous window of offsets ending at the newest
event seen (offsets have no holes, see `_sqlite_store`), or grow past CACHE_RECORDS; an older
window (a lagging reader's) is not cached. Thread-safe: the writer thread, the read executor and
the event loop all use it.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque

from kbroker.core.channel import Record
from kbroker.core.channels import _sqlite_store as store

CACHE_RECORDS = 8192  # decoded events kept for the subscriptions that read the log's tail


class TailCache:
    def __init__(self, size: int = CACHE_RECORDS) -> None:
        self._size = size
        self._records: deque[Record] = deque()
        self._lock = threading.Lock()

    def get(self, after: int, limit: int) -> list[Record]:
        """Up to `limit` records after offset `after`; [] when not cached. Never blocks on disk."""
        with self._lock:
            cache = self._records
            if cache and cache[0].offset <= after + 1 <= cache[-1].offset:
                start = after + 1 - cache[0].offset  # offsets have no holes
                return list(itertools.islice(cache, start, start + limit))
        return []

    def extend(self, records: list[Record]) -> None:
        """Add records just read or written (in offset order)."""
        with self._lock:
            cache = self._records
            if cache and records[0].offset == cache[-1].offset + 1:
                cache.extend(records)
            elif not cache or records[0].offset > cache[-1].offset:
                cache.clear()  # a newer window; an old one (a lagging reader) is not cached
                cache.extend(records)
            while len(cache) > self._size:
                cache.popleft()

    def remember(self, batch: list[store.Op]) -> None:
        """The events of `batch`'s successful appends, just committed by the writer (before the
        log's `end` moves, so no reader can look for them in the file first)."""
        records: list[Record] = []
        for op in batch:
            if op.kind != store.APPEND or op.error is not None or not op.envelopes:
                continue
            offset = op.result
            for env in op.envelopes:
                key = env.event.attributes.get("partitionkey")
                records.append(Record(0, offset, None if key is None else str(key), env))
                offset += 1
        if records:
            self.extend(records)
