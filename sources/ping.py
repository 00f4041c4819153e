"""Fires every PingSource of the current contract on its schedule: one event per tick.

The order for each due tick is: record it (sources/ping_state, fsynced), then send. A tick is due
when its time has come and it is not too old: after a restart, not older than `late` seconds (one
by default) or the source's `catch_up` window; while running, a tick made late by a busy event
loop is still sent, up to `stall` seconds (a process suspended longer does not burst). So after a
restart, ticks that fell while kbroker was down are skipped (Knative's mt-ping keeps no state and
never catches up) unless the PingSource is annotated `kbroker.dev/catch-up`, and a tick already
recorded is never sent again.

The event is Knative's (type `dev.knative.sources.ping`, source
`/apis/v1/namespaces/<ns>/pingsources/<name>`), except that `time` is the scheduled tick rather
than the send time, and `id` is derived from source and tick instead of random, so a consumer can
recognise a resend.

What this module refuses: validation (the compiler did it), sending (sources/emit), and leader
election (one process fires; `kbroker run` has exactly one).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable

from kbroker.core import contract, cron, events
from kbroker.core.contract_ping import PING_TYPE
from kbroker.sources.emit import Emitter
from kbroker.sources.ping_state import TickRecord

log = logging.getLogger("kbroker.sources")

UTC = dt.UTC


def event_for(ping: contract.PingSource, tick: dt.datetime) -> events.CloudEvent:
    """The CloudEvent of one tick."""
    stamp = tick.astimezone(UTC).isoformat().replace("+00:00", "Z")
    body = ping.body()
    attrs: dict[str, events.AttrValue] = {
        "specversion": "1.0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ping.source}#{stamp}")),
        "source": ping.source,
        "type": PING_TYPE,
        "time": stamp,
    }
    if body and ping.content_type:
        attrs["datacontenttype"] = ping.content_type
    attrs.update(dict(ping.extensions))  # ceOverrides overwrite, as in Knative
    return events.CloudEvent(attrs, body or None)


class PingRunner:
    def __init__(
        self,
        current: Callable[[], contract.Contract],
        record: TickRecord,
        emitter: Emitter,
        clock: Callable[[], float] = time.time,
        late: float = 1.0,
        poll: float = 0.5,
        stall: float = 60.0,
    ) -> None:
        self.current = current
        self.record = record
        self.emitter = emitter
        self.clock = clock
        self.late = late
        self.stall = stall
        self.poll = poll
        self._last: dict[str, tuple[str, dt.datetime]] = {}  # key -> (uid, last tick)
        self._schedules: dict[tuple[str, str], cron.Schedule] = {}
        self._sending: set[asyncio.Task[None]] = set()

    def _schedule(self, p: contract.PingSource) -> cron.Schedule:
        key = (p.schedule, p.timezone)
        if key not in self._schedules:
            self._schedules[key] = cron.parse(p.schedule, p.timezone)
        return self._schedules[key]

    def _last_tick(self, p: contract.PingSource, now: dt.datetime) -> tuple[dt.datetime, float]:
        """The last tick handled, and how late a tick after it may still be sent (seconds)."""
        seen = self._last.get(p.key)
        if seen is not None and seen[0] == p.uid:
            # Running all along: a tick is late only because the loop was busy; send it.
            return seen[1], max(self.stall, p.catch_up)
        # First sight in this process: the recorded tick, else now (nothing before creation).
        return self.record.load(p.namespace, p.name, p.uid) or now, max(self.late, p.catch_up)

    def step(self) -> float:
        """Record and start sending every due tick; seconds until the next tick (<= poll)."""
        now = dt.datetime.fromtimestamp(self.clock(), UTC)
        wait = self.poll
        keys = set()
        for p in self.current().sources:
            keys.add(p.key)
            last, window = self._last_tick(p, now)
            floor = now - dt.timedelta(seconds=window)
            sched = self._schedule(p)
            due: list[dt.datetime] = []
            tick = sched.next(max(last, floor - dt.timedelta(seconds=1)))
            while tick is not None and tick <= now:
                if tick >= floor:
                    due.append(tick)
                last = tick
                tick = sched.next(tick)
            if due:
                try:
                    self.record.save(p.namespace, p.name, p.uid, due[-1])
                except OSError as exc:
                    # Unrecorded, a send could repeat after a restart: skip rather than risk it.
                    log.error("pingsource %s: cannot record tick, not sending: %s", p.key, exc)
                    continue
                task = asyncio.create_task(self._send(p, due), name=f"ping-{p.key}")
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            self._last[p.key] = (p.uid, last)
            if tick is not None:
                wait = min(wait, (tick - now).total_seconds())
        for gone in set(self._last) - keys:
            ns, name = gone.split("/", 1)
            del self._last[gone]
            self.record.forget(ns, name)
        return max(wait, 0.0)

    async def _send(self, p: contract.PingSource, ticks: list[dt.datetime]) -> None:
        for tick in ticks:  # in order, so a replay after catch-up arrives oldest first
            try:
                await self.emitter.emit(p, event_for(p, tick))
            except Exception:  # one source's failure must not stop the others' schedules
                log.exception("pingsource %s: tick %s not sent", p.key, tick.isoformat())

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            wait = self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=wait + 0.001)

    async def close(self, grace: float = 5.0) -> None:
        """Let sends in progress finish for up to `grace` seconds, then release the emitter."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=grace)
        await self.emitter.close()
