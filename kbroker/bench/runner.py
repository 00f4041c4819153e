"""One load step, end to end: start the generators together, drain, collect, account.

Why here: this is the only place that knows the whole topology of a step and therefore the only
place that can check that the numbers add up (sent = accepted + errors; delivered + dead letters +
missing = expected per trigger). Generators and the receiver are child processes
(`kbroker.bench.worker`); the server under test is any `servers.Target`. A staircase is a list
of steps on the same processes, so connections and the broker's state carry over between steps
as they would in production.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kbroker.bench import procstat, schedule
from kbroker.bench.histogram import Histogram
from kbroker.bench.receiver import TriggerSpec
from kbroker.bench.results import ProcessUsage, StepResult
from kbroker.bench.worker import WorkerProcess

Progress = Callable[[str, float, int], None]  # (label, fraction done, delivered so far)


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """The generator side of a run, from the command line."""

    mode: str = "binary"
    size: int = 1024
    batch: int = 1
    durability: str | None = None
    concurrency: int = 64
    generators: int = 1
    client: str = "raw"
    drain_timeout: float = 10.0  # seconds to wait for deliveries after the last send
    drain_idle: float = 3.0  # ... or this long without any new delivery


class Receiver:
    """The parent's handle on the receiver process."""

    def __init__(self) -> None:
        self.proc = WorkerProcess("kbroker.bench.receiver")
        self.port = 0
        self.specs: list[TriggerSpec] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self.proc.start()
        self.port = int((await self.proc.call("listen"))["port"])

    async def configure(self, specs: list[TriggerSpec]) -> None:
        self.specs = specs
        await self.proc.call(
            "configure",
            triggers=[
                {"name": s.name, "groups": s.groups, "residue": s.residue, "fail": s.fail}
                for s in specs
            ],
        )

    async def stop(self) -> None:
        await self.proc.stop()


class Session:
    """Generators and (optionally) a receiver, reused across the steps of a scenario."""

    def __init__(
        self,
        url: str,
        load: LoadOptions,
        groups: int,
        receiver: Receiver | None,
        server_pids: Sequence[int] = (),
        progress: Progress | None = None,
        backend_pids: Sequence[int] = (),
    ) -> None:
        self.url = url
        self.backend_pids = list(backend_pids)  # the messaging server's own process (Kafka...)
        self.load = load
        self.groups = groups
        self.receiver = receiver
        self.server_pids = list(server_pids)
        self.progress = progress
        self.generators = [WorkerProcess("kbroker.bench.generator") for _ in range(load.generators)]
        self.next_seq = 0

    async def start(self) -> None:
        for gen in self.generators:
            await gen.start()
            await gen.call(
                "config",
                url=self.url,
                mode=self.load.mode,
                size=self.load.size,
                batch=self.load.batch,
                groups=self.groups,
                durability=self.load.durability,
                concurrency=self.load.concurrency,
                client=self.load.client,
            )

    async def stop(self) -> None:
        for gen in self.generators:
            await gen.stop()

    def _roles(self) -> dict[str, list[int]]:
        roles = {"generator": [g.pid for g in self.generators], "server": self.server_pids}
        if self.receiver is not None:
            roles["receiver"] = [self.receiver.proc.pid]
        if self.backend_pids:
            roles["backend"] = self.backend_pids
        return roles

    async def step(
        self, rate: float, duration: float, p99_bound_ms: float | None = None, label: str = ""
    ) -> StepResult:
        """Offer `rate` events/s for `duration` seconds, drain, and account for every event."""
        load = self.load
        count = max(1, round(rate * duration))
        lo, hi = self.next_seq, self.next_seq + count
        self.next_seq = hi
        rec = self.receiver
        if rec is not None:
            await rec.proc.call("expect", lo=lo, hi=hi)
        roles = self._roles()
        before = {role: _sample(pids) for role, pids in roles.items()}
        machine_before = procstat.machine_jiffies()
        parts = schedule.split_range(lo, count, len(self.generators))
        per_request = load.batch if load.mode == "batch" else 1
        start_wall = time.time() + 0.2
        t0 = time.monotonic() + 0.2
        runs = [
            asyncio.ensure_future(
                gen.call(
                    "run",
                    lo=plo,
                    count=pcount,
                    rate=rate / len(self.generators),
                    start_wall=start_wall,
                    # Interleave the generators' send times instead of firing them in unison.
                    offset=i * per_request / rate,
                )
            )
            for i, (gen, (plo, pcount)) in enumerate(zip(self.generators, parts, strict=True))
        ]
        await self._watch(runs, label, t0, duration)
        answers = [r.result() for r in runs]
        send_seconds = max(time.monotonic() - t0, 1e-9)
        rejected = sorted(s for a in answers for s in a["rejected"])
        accepted = sum(a["accepted"] for a in answers)
        expected = _expected(rec.specs if rec else [], lo, hi, rejected)
        deliver_seconds = send_seconds
        if rec is not None and expected:
            deliver_seconds = await self._drain(rec, expected, t0)
        after = {role: _sample(pids) for role, pids in roles.items()}
        machine_busy = procstat.busy_cores(machine_before, procstat.machine_jiffies())
        window = max(send_seconds, deliver_seconds)
        usage = tuple(
            _usage(role, before[role], sample, accepted, window)
            for role, sample in after.items()
            if sample is not None
        )
        ingress = Histogram()
        statuses: dict[str, int] = {}
        for a in answers:
            ingress.merge(Histogram.from_dict(a["latency"]))
            for k, v in a["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        result: dict[str, Any] = {"extra": {}}
        if rec is not None:
            result = _delivery_totals(await rec.proc.call("collect", rejected=rejected))
        # A process near one full core is the bottleneck whatever the others did: name it.
        per_process = {"generator": len(self.generators), "receiver": 1, "server": 1, "backend": 2}
        saturated = [u.role for u in usage if u.cores >= 0.9 * per_process.get(u.role, 1)]
        if saturated:
            result["extra"]["saturated"] = saturated
        if machine_busy is not None:
            # CPU that processes outside this benchmark took during the step.
            ours = sum(u.cores for u in usage)
            result["extra"]["machine_busy_cores"] = round(machine_busy, 2)
            result["extra"]["other_busy_cores"] = round(max(0.0, machine_busy - ours), 2)
        return StepResult(
            target_rate=rate,
            duration=duration,
            sent=sum(a["sent"] for a in answers),
            accepted=accepted,
            errors=sum(a["errors"] for a in answers),
            statuses=statuses,
            ingress_latency_ms=ingress.summary_ms(),
            send_seconds=send_seconds,
            deliver_seconds=deliver_seconds,
            usage=usage,
            p99_bound_ms=p99_bound_ms,
            **result,
        )

    async def _watch(
        self, runs: Sequence[asyncio.Future[dict[str, Any]]], label: str, t0: float, duration: float
    ) -> None:
        while not all(r.done() for r in runs):
            await asyncio.wait(runs, timeout=0.5)
            if self.progress is not None:
                delivered = 0
                if self.receiver is not None:
                    delivered = int((await self.receiver.proc.call("peek"))["delivered"])
                done = min(1.0, max(0.0, (time.monotonic() - t0) / duration))
                self.progress(label, done, delivered)
        for r in runs:
            r.result()  # raise a generator's failure here, not later

    async def _drain(self, rec: Receiver, expected: int, t0: float) -> float:
        """Wait for the owed deliveries; the time from the first send to the last one seen."""
        load = self.load
        last_count = -1
        last_change = time.monotonic()
        deadline = last_change + load.drain_timeout
        while True:
            peek = await rec.proc.call("peek")
            got = int(peek["delivered"]) + int(peek["dead_lettered"])
            now = time.monotonic()
            if got != last_count:
                last_count, last_change = got, now
            if got >= expected:
                return now - t0
            if now > deadline or now - last_change > load.drain_idle:
                return last_change - t0
            if self.progress is not None:
                self.progress("draining", 1.0, got)
            await asyncio.sleep(0.05)


def _expected(specs: list[TriggerSpec], lo: int, hi: int, rejected: list[int]) -> int:
    total = sum(s.count_in(lo, hi) for s in specs)
    for seq in rejected:
        total -= sum(1 for s in specs if s.matches(seq))
    return total


def _delivery_totals(collected: dict[str, Any]) -> dict[str, Any]:
    triggers: dict[str, dict[str, Any]] = collected["triggers"]
    e2e = Histogram()
    gaps = Histogram()
    per_trigger: dict[str, dict[str, Any]] = {}
    for name, t in triggers.items():
        lat = Histogram.from_dict(t["latency"])
        gap = Histogram.from_dict(t["gaps"])
        e2e.merge(lat)
        gaps.merge(gap)
        row = {k: v for k, v in t.items() if k not in ("latency", "gaps")}
        row["latency_ms"] = lat.summary_ms()
        if gap.total:
            row["retry_gap_ms"] = gap.summary_ms()
        per_trigger[name] = row

    def total(key: str) -> int:
        return sum(int(t[key]) for t in triggers.values())

    return {
        "expected": total("expected"),
        "delivered": total("delivered"),
        "dead_lettered": total("dead_lettered"),
        "duplicates": total("duplicates"),
        "missing": total("missing"),
        "unexpected": total("unexpected"),
        "retries": total("retries"),
        "failed_on_purpose": total("failed"),
        "e2e_latency_ms": e2e.summary_ms(),
        "retry_gap_ms": gaps.summary_ms() if gaps.total else {},
        # A thousand idle triggers would drown the JSON: keep per-trigger rows for small fan-outs.
        "per_trigger": per_trigger if len(per_trigger) <= 20 else {},
        "extra": {"otlp_requests": collected["otlp_requests"], "unknown": collected["unknown"]},
    }


def _sample(pids: list[int]) -> procstat.Sample | None:
    samples = [s for s in (procstat.sample(p) for p in pids) if s is not None]
    if not samples:
        return None
    return procstat.Sample(
        cpu_seconds=sum(s.cpu_seconds for s in samples),
        rss_kb=sum(s.rss_kb for s in samples),
        hwm_kb=sum(s.hwm_kb for s in samples),
        pids=sum(s.pids for s in samples),
    )


def _usage(
    role: str,
    before: procstat.Sample | None,
    after: procstat.Sample,
    events: int,
    window: float,
) -> ProcessUsage:
    cpu = after.cpu_seconds - (before.cpu_seconds if before else 0.0)
    return ProcessUsage(
        role=role,
        cpu_seconds=cpu,
        per_1k_events=cpu / events * 1000 if events else 0.0,
        cores=cpu / window if window > 0 else 0.0,
        rss_kb=after.rss_kb,
        hwm_kb=after.hwm_kb,
    )
