"""Events lost after they were answered: appends at durability `none` the writer could not store.

Why: `none` answers 202 once the event is queued in memory, so a write that fails afterwards (a
full disk, a damaged file, an I/O error) loses events nobody is waiting for. Losing them is the
contract (they were never promised to disk); losing them silently is not. Every such loss is
counted per reason (exported as a metric through the channel's stats) and logged as an ERROR
naming the log, how many events and their first and last ids: at most once per interval per log,
the events in between summed into the next line, so a full disk cannot flood the log.

What it refuses to do: keep or retry the events (the writer's backlog would grow without bound
while the disk stays full), or put event ids in metric labels.
Written by the log's writer thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from kbroker.core.channel import ChannelFull
from kbroker.core.channels import _sqlite_store as store

_log = logging.getLogger(__name__)

LOG_INTERVAL = 10.0  # seconds between two loss lines for one log
FIRST_IDS = 3  # ids named per line (plus the last one)


def reason(err: BaseException) -> str:
    """The metric's `reason` label: a small fixed set, never the error text."""
    if isinstance(err, ChannelFull):
        return "disk_full"
    if isinstance(err, store.LogDamaged):
        return "damaged"
    return "write_error"


class LossReport:
    """Counts and logs the fire-and-forget appends of each applied batch that failed."""

    def __init__(
        self,
        name: str,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._interval = interval
        self._clock = clock
        self.lost: dict[str, int] = {}  # reason -> events lost since the log was opened
        self._pending = 0  # lost but not yet logged
        self._reasons: dict[str, str] = {}  # reason -> one error text, for the next line
        self._first: list[str] = []
        self._last = ""
        self._next_line = 0.0

    def note(self, ops: Iterable[store.Op]) -> None:
        """Record the failed `none` appends among `ops` and log when the interval allows."""
        for op in ops:
            if op.kind != store.APPEND or op.future is not None or op.error is None:
                continue
            why = reason(op.error)
            self.lost[why] = self.lost.get(why, 0) + len(op.envelopes)
            self._pending += len(op.envelopes)
            self._reasons.setdefault(why, str(op.error))
            for env in op.envelopes:
                event_id = str(env.event.attributes.get("id", ""))
                if len(self._first) < FIRST_IDS:
                    self._first.append(event_id)
                self._last = event_id
        self.flush()

    def flush(self, force: bool = False) -> None:
        """Log what was lost since the last line, if any and if the interval has passed."""
        if not self._pending:
            return
        now = self._clock()
        if not force and now < self._next_line:
            return
        self._next_line = now + self._interval
        causes = "; ".join(f"{k}: {v}" for k, v in self._reasons.items())
        _log.error(
            "embedded log %s: LOST %d events accepted at durability none (%s); first ids %s,"
            " last id %s",
            self._name,
            self._pending,
            causes,
            ", ".join(self._first),
            self._last,
        )
        self._pending, self._reasons, self._first, self._last = 0, {}, [], ""
