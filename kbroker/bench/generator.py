"""The load generator: open-loop, fixed-rate POSTs of benchmark events, one process per core.

Why a process of its own: the generator must not share an event loop (or a GIL) with the
receiver or the coordinator, and `--generators N` runs several to spread the cost; its CPU time is
read from /proc like every other participant's. It is driven over stdin/stdout with one JSON
object per line (see `kbroker.bench.worker`): a `config` line, then `run` lines, each answered by
the run's counts and ingress latency histogram.

The send loop is wrk2-style: `concurrency` slots, each owning one connection, claim the next
request index, sleep until that request's intended time (from `schedule.Schedule`) and send it.
Latency runs from the intended time to the response, so when every slot is busy the queueing
delay is charged to the server, not hidden (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from kbroker.bench import clients, payload, worker
from kbroker.bench.histogram import Histogram
from kbroker.bench.schedule import Schedule

_MAX_REJECTED = 100_000  # sequence numbers kept for the loss accounting; counts stay exact


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    url: str
    shape: payload.EventShape
    concurrency: int = 64
    client: str = "raw"
    timeout: float = 30.0

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> GeneratorConfig:
        return cls(
            url=str(obj["url"]),
            shape=payload.EventShape(
                mode=str(obj.get("mode", "binary")),
                size=int(obj.get("size", 1024)),
                batch=int(obj.get("batch", 1)),
                groups=int(obj.get("groups", 1)),
                durability=obj.get("durability"),
            ),
            concurrency=int(obj.get("concurrency", 64)),
            client=str(obj.get("client", "raw")),
            timeout=float(obj.get("timeout", 30.0)),
        )


@dataclass(slots=True)
class RunStats:
    sent: int = 0
    accepted: int = 0
    errors: int = 0
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    rejected: list[int] = field(default_factory=list)
    latency: Histogram = field(default_factory=Histogram)


async def run(
    client: clients.Client,
    shape: payload.EventShape,
    concurrency: int,
    lo: int,
    count: int,
    rate: float,
    start_wall: float,
    offset: float = 0.0,
) -> RunStats:
    """Send events lo .. lo+count-1 at `rate` events/s, the first one due at `start_wall`."""
    # time.monotonic, not loop.time: uvloop's loop clock is cached per iteration with millisecond
    # resolution, which would blur sub-millisecond latencies and the send schedule.
    clock = time.monotonic
    per = shape.per_request
    nreq = -(-count // per)
    stats = RunStats()
    if nreq == 0:
        return stats
    # Map the shared wall-clock start onto the monotonic clock once.
    start = clock() + (start_wall - time.time())
    sched = Schedule(start=start, rate=rate / per, count=nreq, offset=offset)
    wall0_us = int((start_wall + offset) * 1e6)
    interval_us = 1e6 / sched.rate
    next_index = 0
    end = lo + count
    record = stats.latency.record

    async def slot_loop(slot: int) -> None:
        nonlocal next_index
        while next_index < nreq:
            i = next_index
            next_index += 1
            due = sched.intended(i)
            delay = due - clock()
            if delay > 0.0002:  # a shorter sleep costs more than it corrects
                await asyncio.sleep(delay)
                # uvloop's timers are millisecond-grained and fire up to ~1 ms early; an early
                # send would flatter the server (latency is measured from `due`), a late one is
                # charged to it, so wait out the rest, at the timer's granularity.
                while (early := due - clock()) > 0.00005:
                    await asyncio.sleep(max(early, 0.001))
            seq = lo + i * per
            n = min(per, end - seq)
            headers, body = shape.build(seq, n, wall0_us + int(i * interval_us))
            stats.sent += n
            stats.requests += 1
            try:
                status = await client.post(slot, headers, body)
                key = str(status)
            except clients.ClientError:
                status, key = 0, "error"
            record(int((clock() - due) * 1e6))
            stats.statuses[key] = stats.statuses.get(key, 0) + 1
            if 200 <= status < 300:
                stats.accepted += n
            else:
                stats.errors += n
                if len(stats.rejected) < _MAX_REJECTED:
                    stats.rejected.extend(range(seq, seq + n))

    await asyncio.gather(*(slot_loop(s) for s in range(min(concurrency, nreq))))
    return stats


class GeneratorServer:
    """Answers `run` commands for one configuration, reusing its connections between runs."""

    def __init__(self) -> None:
        self._config: GeneratorConfig | None = None
        self._client: clients.Client | None = None

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        if op == "config":
            self._config = GeneratorConfig.from_json(cmd)
            self._client = clients.make(
                self._config.client,
                self._config.url,
                self._config.concurrency,
                self._config.timeout,
            )
            await self._client.warm()
            return {"ok": True}
        if op == "run":
            if self._config is None or self._client is None:
                raise worker.WorkerError("run before config")
            t0 = time.monotonic()
            stats = await run(
                self._client,
                self._config.shape,
                self._config.concurrency,
                lo=int(cmd["lo"]),
                count=int(cmd["count"]),
                rate=float(cmd["rate"]),
                start_wall=float(cmd["start_wall"]),
                offset=float(cmd.get("offset", 0.0)),
            )
            return {
                "sent": stats.sent,
                "accepted": stats.accepted,
                "errors": stats.errors,
                "requests": stats.requests,
                "statuses": stats.statuses,
                "rejected": stats.rejected,
                "latency": stats.latency.to_dict(),
                "elapsed": time.monotonic() - t0,
            }
        raise worker.WorkerError(f"unknown op {op!r}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


if __name__ == "__main__":
    worker.serve(GeneratorServer)
