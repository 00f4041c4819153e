"""A bounded buffer between a fast producer and one slow viewer: the oldest items give way.

A live tail must never slow the broker down nor grow without bound when a viewer's browser or
terminal reads slowly, so the reader side of a tail pushes into this buffer without ever waiting,
and when it is full the oldest item is dropped and counted. The viewer is shown the count ("N
dropped") rather than a silently thinned stream.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class TailBuffer(Generic[T]):
    """At most `capacity` items; `push` never blocks, `get` waits for at least one."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0  # items pushed out unread, since the buffer was made
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: T) -> None:
        if len(self._items) >= self.capacity:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()

    def close(self) -> None:
        """No more items will come; a waiting `get` returns what is left, then []."""
        self.closed = True
        self._ready.set()

    def take(self, limit: int | None = None) -> list[T]:
        """Up to `limit` buffered items, oldest first, without waiting."""
        n = len(self._items) if limit is None else min(limit, len(self._items))
        out = [self._items.popleft() for _ in range(n)]
        if not self._items and not self.closed:
            self._ready.clear()
        return out

    async def get(self, limit: int | None = None, timeout: float | None = None) -> list[T]:
        """Buffered items, waiting up to `timeout` s for the first; [] on timeout or when closed
        and empty."""
        if not self._items and not self.closed:
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return []
        return self.take(limit)
