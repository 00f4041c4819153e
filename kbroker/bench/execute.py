"""Running a scenario: bring up what it needs, run its steps, tear everything down.

Why one module: every scenario is the same three phases (servers up, load steps, teardown) with
different servers and triggers, and the teardown must happen on every path (a failed step, a
broker that never gets ready, Ctrl-C), so it is written once with an AsyncExitStack. The servers
come from `kbroker.bench.servers`, the load and accounting from `kbroker.bench.runner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from kbroker.bench import brokerconfig, overload, procstat, runner, servers, sse
from kbroker.bench.results import ScenarioResult, StepResult
from kbroker.bench.scenarios import Scenario

StepDone = Callable[[str, StepResult], None]
_PREFIX = "kbroker-bench-"  # our files in a folder someone else's broker watches


@dataclass(frozen=True, slots=True)
class BenchOptions:
    load: runner.LoadOptions
    rates: tuple[float, ...]
    duration: float
    staircase: bool = False
    p99_bound_ms: float | None = None
    url: str | None = None  # a broker someone else runs
    broker_config: Path | None = None  # ... and the folder it watches, to add our triggers to
    processes: int = 1
    kafka: str | None = None
    nats: str | None = None
    rabbitmq: str | None = None
    warmup_timeout: float = 30.0
    backend_pids: tuple[int, ...] = ()  # the messaging server's processes, CPU reported apart
    deadline: float | None = None  # time.monotonic() after which a staircase starts no step

    @property
    def channel(self) -> str:
        """The backend the generated Broker selects (Kafka is the process default under --kafka)."""
        return "nats" if self.nats else "rabbitmq" if self.rabbitmq else "embedded"


async def run(
    sc: Scenario,
    opts: BenchOptions,
    progress: runner.Progress | None = None,
    step_done: StepDone | None = None,
) -> ScenarioResult:
    if sc.kind == "cesql":
        return await _cesql(sc, opts)
    if (
        opts.url is not None
        and opts.broker_config is None
        and sc.trigger_specs()
        and sc.needs_broker
    ):
        raise servers.TargetError(
            f"{sc.name} needs triggers on the broker at --url: pass --broker-config DIR, the "
            "folder that broker watches, so the benchmark can add them"
        )
    async with contextlib.AsyncExitStack() as stack:
        if sc.kind == "triggers":
            result = await _triggers(sc, opts, stack)
        elif sc.kind == "overload":
            result = await _overload(sc, opts, stack, progress, step_done)
        elif sc.kind == "tail":
            result = await _tail(sc, opts, stack, progress, step_done)
        else:
            result = await _load(sc, opts, stack, progress, step_done)
    return result


async def _receiver(stack: contextlib.AsyncExitStack, sc: Scenario) -> runner.Receiver:
    rec = runner.Receiver()
    stack.push_async_callback(rec.stop)
    await rec.start()
    await rec.configure(sc.trigger_specs())
    return rec


async def _broker(
    sc: Scenario,
    opts: BenchOptions,
    stack: contextlib.AsyncExitStack,
    rec: runner.Receiver,
    with_triggers: bool = True,
) -> tuple[servers.Target, Path]:
    """A broker with this scenario's config: ours (temp dir) or the one at --url."""
    specs = sc.trigger_specs() if with_triggers else []
    if opts.url is not None:
        folder = opts.broker_config or Path(".")
        if opts.broker_config is not None:
            # The broker's watch is not recursive: our files go next to the user's, prefixed.
            written = brokerconfig.write(folder, specs, rec.url, sc.delivery(), prefix=_PREFIX)
            stack.callback(_remove, written)
            await asyncio.sleep(1.0)  # let the broker's folder watch pick the files up
        return servers.UrlTarget(opts.url), folder
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kbroker-bench-")))
    brokerconfig.write(tmp / "config", specs, rec.url, sc.delivery(), channel=opts.channel)
    target = await servers.start_broker(
        tmp / "config",
        tmp / "data",
        processes=opts.processes,
        kafka=opts.kafka,
        env=sc.broker_env(rec.url),
        log=tmp / "broker.log",
        nats=opts.nats,
        rabbitmq=opts.rabbitmq,
    )
    stack.push_async_callback(target.stop)
    return target, tmp / "config"


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


async def _load(
    sc: Scenario,
    opts: BenchOptions,
    stack: contextlib.AsyncExitStack,
    progress: runner.Progress | None,
    step_done: StepDone | None,
) -> ScenarioResult:
    facts: dict[str, Any] = {}
    rec: runner.Receiver | None = None
    target: servers.Target | None = None
    if sc.kind == "ceiling":
        ceiling = await servers.start_ceiling(opts.processes)
        stack.push_async_callback(ceiling.stop)
        target, url = ceiling, f"{ceiling.url}/{brokerconfig.NAMESPACE}/{brokerconfig.BROKER}"
    elif sc.kind == "direct":
        rec = await _receiver(stack, sc)
        url = f"{rec.url}/t/direct"
    else:
        rec = await _receiver(stack, sc)
        target, _ = await _broker(sc, opts, stack, rec)
        url = brokerconfig.ingress_url(target.url)
        facts["ready_seconds"] = round(getattr(target, "ready_seconds", 0.0), 3)
    session = runner.Session(
        url,
        opts.load,
        sc.groups,
        rec,
        target.pids() if target else [],
        progress,
        backend_pids=opts.backend_pids if sc.needs_broker else (),
    )
    stack.push_async_callback(session.stop)
    await session.start()
    if sc.needs_broker:
        # Also without triggers: the first appends create the broker's storage (a Kafka topic,
        # a log file), which is start-up cost, not steady-state latency.
        warm, attempts = await _warm_up(session, opts)
        key = "first_delivery_seconds" if rec is not None and rec.specs else "warm_up_seconds"
        facts[key] = round(warm, 3)
        if target is not None and (channel := await _broker_channel(target.url)) is not None:
            facts["channel"] = channel  # what the broker says it uses, not what we asked for
        if len(attempts) > 1:
            facts["warm_up_attempts"] = attempts
    steps: list[StepResult] = []
    for rate in opts.rates:
        step = await session.step(rate, opts.duration, opts.p99_bound_ms, label=f"{sc.name}")
        if target is not None and sc.needs_broker:
            lag = await _consumer_lag(target.url)
            if lag is not None:
                step = dataclasses.replace(step, extra={**step.extra, "consumer_lag": lag})
        steps.append(step)
        if step_done is not None:
            step_done(sc.name, step)
        if opts.staircase and not step.passed:
            break  # past the knee: higher steps only queue more
        if opts.deadline is not None and time.monotonic() > opts.deadline:
            break  # a bounded run (`bench backends`): this row's time is up
    return ScenarioResult(sc.name, sc.description, tuple(steps), facts)


async def _warm_up(session: runner.Session, opts: BenchOptions) -> tuple[float, list[Any]]:
    """Send one event per trigger group until every trigger has one: the broker is then
    dispatching, and the first step measures the steady state, not the start-up. Answers the
    seconds it took and each attempt's counts (start-up trouble shows there)."""
    t0 = time.monotonic()
    groups = max(session.groups, 1)
    rate = min(2000.0, max(groups, 10) * 20.0)
    attempts: list[Any] = []
    while True:
        step = await session.step(rate, max(groups, 10) / rate)
        attempts.append(
            {
                "sent": step.sent,
                "errors": step.errors,
                "missing": step.missing,
                "send_seconds": round(step.send_seconds, 3),
                "deliver_seconds": round(step.deliver_seconds, 3),
                "ingress_p50_ms": step.ingress_latency_ms.get("p50"),
                "ingress_p99_ms": step.ingress_latency_ms.get("p99"),
            }
        )
        if step.missing == 0 and step.errors == 0:
            return time.monotonic() - t0, attempts
        if time.monotonic() - t0 > opts.warmup_timeout:
            raise servers.TargetError(
                f"broker did not deliver to every trigger within {opts.warmup_timeout:.0f} s "
                f"(missing {step.missing}, errors {step.errors}, statuses {step.statuses})"
            )
        await asyncio.sleep(0.2)


async def _status(base: str) -> dict[str, Any] | None:
    """The broker's GET /status (Knative-shaped objects), or None when it has none."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, ValueError):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as http,
            http.get(f"{base}/status") as resp,
        ):
            if resp.status == 200:
                doc: dict[str, Any] = await resp.json(content_type=None)
                return doc
    return None


def _bench_triggers(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        t
        for t in status.get("triggers", [])
        if t.get("metadata", {}).get("namespace") == brokerconfig.NAMESPACE
    ]


async def _consumer_lag(base: str) -> int | None:
    """Events the bench triggers have not consumed yet (the `kbroker.dev/lag` annotation)."""
    status = await _status(base)
    if status is None:
        return None
    lags = [
        int(t["status"]["annotations"]["kbroker.dev/lag"])
        for t in _bench_triggers(status)
        if "kbroker.dev/lag" in t.get("status", {}).get("annotations", {})
    ]
    return sum(lags) if lags else None


async def _broker_channel(base: str) -> str | None:
    """The bench Broker's channel as its status reports it (`kbroker.dev/channel`)."""
    status = await _status(base)
    for b in (status or {}).get("brokers", []):
        meta = b.get("metadata", {})
        if (meta.get("namespace"), meta.get("name")) == (
            brokerconfig.NAMESPACE,
            brokerconfig.BROKER,
        ):
            found = b.get("status", {}).get("annotations", {}).get("kbroker.dev/channel")
            return str(found) if found is not None else None
    return None


async def _ready_triggers(base: str) -> int:
    status = await _status(base)
    if status is None:
        return 0
    ready = 0
    for t in _bench_triggers(status):
        for cond in t.get("status", {}).get("conditions", []):
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                ready += 1
    return ready


async def _wait_ready_triggers(base: str, count: int, timeout: float) -> float | None:
    """Seconds until /status shows `count` bench triggers Ready (None: not within timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if await _ready_triggers(base) >= count:
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    return None


async def _triggers(
    sc: Scenario, opts: BenchOptions, stack: contextlib.AsyncExitStack
) -> ScenarioResult:
    """Idle trigger scale: start with none, add N, time until the last one delivers, RSS delta."""
    rec = await _receiver(stack, sc)
    target, folder = await _broker(sc, opts, stack, rec, with_triggers=False)
    pids = target.pids()
    await asyncio.sleep(1.0)
    before = procstat.sample(pids[0]) if pids else None
    facts: dict[str, Any] = {"triggers": sc.triggers, "startup_ready_seconds": None}
    facts["startup_ready_seconds"] = round(getattr(target, "ready_seconds", 0.0), 3)
    session = runner.Session(
        brokerconfig.ingress_url(target.url),
        dataclasses.replace(opts.load, generators=1, concurrency=4),
        sc.groups,
        rec,
        pids,
    )
    stack.push_async_callback(session.stop)
    await session.start()
    if sc.triggers:
        t0 = time.monotonic()
        prefix = _PREFIX if opts.url is not None else ""
        written = brokerconfig.write_triggers(
            folder, sc.trigger_specs(), rec.url, sc.delivery(), prefix
        )
        if opts.url is not None:
            stack.callback(_remove, [written])
        ready = await _wait_ready_triggers(target.url, sc.triggers, opts.warmup_timeout)
        facts["ready_seconds"] = None if ready is None else round(ready, 3)
        _, facts["warm_up_attempts"] = await _warm_up(session, opts)
        facts["all_delivering_seconds"] = round(time.monotonic() - t0, 3)
    await asyncio.sleep(1.0)
    after = procstat.sample(pids[0]) if pids else None
    if before is not None and after is not None:
        facts["rss_kb_before"] = before.rss_kb
        facts["rss_kb_after"] = after.rss_kb
        facts["peak_rss_kb"] = after.hwm_kb
        if sc.triggers:
            facts["rss_kb_per_trigger"] = round((after.rss_kb - before.rss_kb) / sc.triggers, 2)
    return ScenarioResult(sc.name, sc.description, (), facts)


async def _overload(
    sc: Scenario,
    opts: BenchOptions,
    stack: contextlib.AsyncExitStack,
    progress: runner.Progress | None,
    step_done: StepDone | None,
) -> ScenarioResult:
    """A backlog no trigger reads, a Trigger added live, e2e steps up to the knee, then 1.5x and
    2x the highest sustainable rate: does delivered/s hold (`kbroker.bench.overload`)?"""
    rec = await _receiver(stack, sc)
    specs = rec.specs
    await rec.configure([])  # the backlog is owed to nobody
    target, folder = await _broker(sc, opts, stack, rec, with_triggers=False)
    session = runner.Session(
        brokerconfig.ingress_url(target.url),
        opts.load,
        sc.groups,
        rec,
        target.pids(),
        progress,
        backend_pids=opts.backend_pids,
    )
    stack.push_async_callback(session.stop)
    await session.start()
    facts: dict[str, Any] = {"ready_seconds": round(getattr(target, "ready_seconds", 0.0), 3)}
    await _warm_up(session, opts)
    steps: list[StepResult] = []

    def record(step: StepResult) -> None:
        steps.append(step)
        if step_done is not None:
            step_done(sc.name, step)

    record(await session.step(max(opts.rates), opts.duration, label=f"{sc.name} backlog"))
    await rec.configure(specs)
    prefix = _PREFIX if opts.url is not None else ""
    written = brokerconfig.write_triggers(folder, specs, rec.url, sc.delivery(), prefix)
    if opts.url is not None:
        stack.callback(_remove, [written])
    facts["trigger_ready_seconds"] = await _wait_ready_triggers(
        target.url, len(specs), opts.warmup_timeout
    )
    facts["first_delivery_seconds"] = round((await _warm_up(session, opts))[0], 3)
    rate: float | None = None
    for r in opts.rates:
        step = await session.step(r, opts.duration, opts.p99_bound_ms, label=f"{sc.name} e2e")
        record(step)
        if not overload.sustainable(step):
            break
        rate = r
    over: list[StepResult] = []
    for factor in overload.FACTORS:
        if rate is None:
            break
        step = await session.step(rate * factor, opts.duration, label=f"{sc.name} {factor:g}x")
        record(step)
        over.append(step)
    facts.update(overload.verdict(rate, over))
    return ScenarioResult(sc.name, sc.description, tuple(steps), facts)


async def _tail(
    sc: Scenario,
    opts: BenchOptions,
    stack: contextlib.AsyncExitStack,
    progress: runner.Progress | None,
    step_done: StepDone | None,
) -> ScenarioResult:
    """e2e at each rate twice on the same processes: no console client, then one live tail (the
    console's SSE stream, read as fast as it comes) open on the broker. The facts give the ratio
    of delivered/s and the broker's CPU per event, with to without."""
    rec = await _receiver(stack, sc)
    target, _ = await _broker(sc, opts, stack, rec)
    session = runner.Session(
        brokerconfig.ingress_url(target.url), opts.load, sc.groups, rec, target.pids(), progress
    )
    stack.push_async_callback(session.stop)
    await session.start()
    facts: dict[str, Any] = {"ready_seconds": round(getattr(target, "ready_seconds", 0.0), 3)}
    facts["first_delivery_seconds"] = round((await _warm_up(session, opts))[0], 3)
    steps: list[StepResult] = []
    compared: list[dict[str, Any]] = []
    for rate in opts.rates:
        pair: dict[str, StepResult] = {}
        for mode in ("off", "on"):
            client = sse.TailClient(target.url, brokerconfig.NAMESPACE, brokerconfig.BROKER)
            if mode == "on":
                await client.start()
            try:
                step = await session.step(rate, opts.duration, label=f"{sc.name} {mode}")
            finally:
                counts = await client.stop()
            extra: dict[str, Any] = {"tail": mode}
            if mode == "on":
                extra["tail_messages"] = counts.by_event
                extra["tail_bytes"] = counts.bytes
            step = dataclasses.replace(step, extra={**step.extra, **extra})
            pair[mode] = step
            steps.append(step)
            if step_done is not None:
                step_done(f"{sc.name} {mode}", step)
        compared.append(_tail_cost(rate, pair["off"], pair["on"]))
    facts["compared"] = compared
    return ScenarioResult(sc.name, sc.description, tuple(steps), facts)


def _tail_cost(rate: float, off: StepResult, on: StepResult) -> dict[str, Any]:
    """One rate's comparison: delivered/s and the broker's CPU-s per event, tail on / off."""

    def server_cpu_per_event(step: StepResult) -> float | None:
        per_1k = [u.per_1k_events for u in step.usage if u.role == "server"]
        return per_1k[0] / 1000.0 if per_1k else None

    cpu_off, cpu_on = server_cpu_per_event(off), server_cpu_per_event(on)
    return {
        "rate": rate,
        "delivered_per_s_off": round(off.delivered_per_s, 1),
        "delivered_per_s_on": round(on.delivered_per_s, 1),
        "throughput_ratio": (
            round(on.delivered_per_s / off.delivered_per_s, 4) if off.delivered_per_s else None
        ),
        "server_cpu_s_per_event_off": None if cpu_off is None else round(cpu_off, 7),
        "server_cpu_s_per_event_on": None if cpu_on is None else round(cpu_on, 7),
        "cpu_ratio": round(cpu_on / cpu_off, 4) if cpu_off and cpu_on is not None else None,
        "missing_off": off.missing,
        "missing_on": on.missing,
    }


async def _cesql(sc: Scenario, opts: BenchOptions) -> ScenarioResult:
    try:
        module = importlib.import_module("kbroker.bench_cesql")
    except ImportError as exc:
        return ScenarioResult(sc.name, sc.description, skipped=f"kbroker.bench_cesql: {exc}")
    cases = await asyncio.to_thread(module.measure, min(opts.duration, 2.0))
    return ScenarioResult(sc.name, sc.description, facts={"cases": list(cases)})
