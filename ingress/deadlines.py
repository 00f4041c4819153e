"""Append timeouts for every in-flight request, kept by one sweeper task instead of a timer each.

Why not `asyncio.timeout` per request: on the ingress's hot path it cost a `Timeout` object, a
timer handle, and three `get_running_loop()` calls, each of which is a `getpid()` system call in
CPython 3.11; in this VM that added up to ~7 % of the event loop's CPU at 6,000 requests/s
(py-spy --native). Here a request registers its task with its start time (a dict insert) and
unregisters when done; a sweeper wakes a few times per timeout period and cancels the tasks that
are over their deadline. The timeout is therefore honoured to within `granularity` seconds, which
is fine for a limit measured in seconds that exists to turn a stuck channel into a 503.

Cancellation is told apart from any other: a task the sweeper cancelled is in `expired`, and
`wait` turns that CancelledError (after `uncancel()`) into TimeoutError; other cancellations pass
through unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Deadlines:
    def __init__(self, timeout: float, granularity: float | None = None) -> None:
        self.timeout = timeout
        self.granularity = granularity if granularity is not None else min(0.25, timeout / 4)
        self._waiting: dict[asyncio.Task[object], float] = {}  # insertion order = start order
        self._expired: set[asyncio.Task[object]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def wait(self, aw: Awaitable[T], now: float) -> T:
        """Await `aw`; TimeoutError once `timeout` seconds have passed since `now`, the caller's
        time.perf_counter() at this call (passed in because the caller has just read it; the
        sweeper relies on registrations arriving in time order)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)  # with the loop given: no getpid()
        if task is None:  # not in a task (cannot be cancelled): no deadline to enforce
            return await aw
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = loop.create_task(self._sweep())
        self._waiting[task] = now
        try:
            return await aw
        except asyncio.CancelledError:
            if task in self._expired:
                task.uncancel()
                raise TimeoutError from None
            raise
        finally:
            self._waiting.pop(task, None)
            self._expired.discard(task)

    async def _sweep(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.granularity)
            cutoff = time.perf_counter() - self.timeout
            for task, started in list(self._waiting.items()):
                if started > cutoff:
                    break  # in start order: the rest are younger
                del self._waiting[task]
                self._expired.add(task)
                task.cancel()
        # Idle: the next request starts a new sweeper, so an idle ingress costs no wake-ups.
