"""`kbroker bench backends`: the four channels side by side, in one run, in about five minutes.

Why: a user choosing a backend wants the same rows for each (ingress at `all` and at `none`,
end-to-end with one trigger) measured on the same machine in the same minutes, with the CPU each
costs: kbroker's process and the messaging server's own process (Kafka's JVM, nats-server,
RabbitMQ's Erlang VM), which the broker's figure alone hides. Separate runs on a shared machine
are not comparable, so one command runs them all, backend after backend, Kafka first (the other
backends' ingress target is a fraction of Kafka's row in the same run).

The server process is found by the port of the URL given (`--kafka`, `--nats`, `--rabbitmq`):
whichever of our processes listens there (`procstat.listener_pid`), with its descendants.

Bounded duration: short staircases held `HOLD` seconds per step, and a budget: each row gets an
equal share of the time left, its staircase is cut to the steps that fit, and it starts no new
step once its share is spent; a row whose turn comes after `BUDGET` seconds is "not measured".

What it refuses: to judge a backend whose rows did not run (its targets say "not measured").
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kbroker.bench import execute, procstat, runner, scenarios
from kbroker.bench.results import ScenarioResult, StepResult

BACKENDS = ("kafka", "embedded", "nats", "rabbitmq")  # Kafka first: the others' reference
HOLD = 3.0  # seconds per staircase step
BUDGET = 270.0  # seconds: no row starts after this (the whole run stays under five minutes)
STARTUP = 8.0  # seconds a row spends outside its steps (broker start, warm-up), to plan with
INGRESS_VS_KAFKA = 0.8  # ingress at `all` >= this x the same run's Kafka row
E2E_TARGET = 3000.0  # delivered/s with one trigger


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    scenario: str
    durability: str
    staircase: tuple[float, float, float]


ROWS = (
    Row("ingress-all", "ingress", "all", (2000, 2500, 12000)),
    Row("ingress-none", "ingress", "none", (2000, 2500, 12000)),
    Row("e2e", "e2e", "all", (1000, 1500, 8500)),
)


def server_port(backend: str, address: str) -> int | None:
    """The TCP port of the first server in a bootstrap list or URL."""
    first = address.split(",")[0].strip()
    if backend == "kafka":
        _, _, port = first.rpartition(":")
        return int(port) if port.isdigit() else None
    try:
        return urllib.parse.urlsplit(first).port
    except ValueError:
        return None


def backend_pids(backend: str, address: str | None) -> tuple[int, ...]:
    if not address:
        return ()
    port = server_port(backend, address)
    pid = procstat.listener_pid(port) if port else None
    return (pid,) if pid is not None else ()


def _options(
    base: execute.BenchOptions, backend: str, address: str | None, row: Row, steps: int
) -> execute.BenchOptions:
    rates = scenarios.parse_staircase(":".join(f"{x:g}" for x in row.staircase))[: max(1, steps)]
    return dataclasses.replace(
        base,
        load=dataclasses.replace(base.load, durability=row.durability),
        rates=tuple(rates),
        staircase=True,
        p99_bound_ms=base.p99_bound_ms if base.p99_bound_ms is not None else 100.0,
        kafka=address if backend == "kafka" else None,
        nats=address if backend == "nats" else None,
        rabbitmq=address if backend == "rabbitmq" else None,
        backend_pids=backend_pids(backend, address),
    )


async def run_all(
    base: execute.BenchOptions,
    addresses: Mapping[str, str | None],
    on_result: Callable[[str, ScenarioResult], None],
    progress: runner.Progress | None = None,
    step_done: execute.StepDone | None = None,
    budget: float = BUDGET,
    rows: Sequence[Row] = ROWS,
) -> dict[str, dict[str, ScenarioResult]]:
    """Every row on every backend with an address (the embedded log needs none)."""
    chosen = [b for b in BACKENDS if b == "embedded" or addresses.get(b)]
    plan = [(b, row) for b in chosen for row in rows]
    out: dict[str, dict[str, ScenarioResult]] = {}
    t0 = time.monotonic()
    hold = base.duration
    for i, (backend, row) in enumerate(plan):
        name = f"{backend}/{row.key}"
        left = budget - (time.monotonic() - t0)
        (sc,) = scenarios.parse(row.scenario)
        if left <= 0:
            result = ScenarioResult(name, sc.description, skipped="not measured: time budget")
        else:
            share = left / (len(plan) - i)
            steps = int((share - STARTUP) // (hold + 1.5))
            opts = _options(base, backend, addresses.get(backend), row, steps)
            # A step may outlast its hold (a server slower than the offered rate sends longer):
            # the row stops climbing once its share is spent, so later rows keep theirs.
            opts = dataclasses.replace(opts, deadline=time.monotonic() + share - STARTUP)
            try:
                result = await execute.run(sc, opts, progress, step_done)
            except Exception as exc:  # one backend failing must not lose the others' rows
                result = ScenarioResult(sc.name, sc.description, skipped=f"failed: {exc}")
            result = dataclasses.replace(result, name=name)
        on_result(name, result)
        out.setdefault(backend, {})[row.key] = result
    return out


def _step(result: ScenarioResult | None) -> StepResult | None:
    """The knee step, else the lowest step (which failed: its CPU figures are still honest)."""
    if result is None or not result.steps:
        return None
    return result.knee or min(result.steps, key=lambda s: s.target_rate)


def _knee(result: ScenarioResult | None, delivered: bool) -> float | None:
    if result is None or not result.steps:
        return None
    knee = result.knee
    if knee is None:
        return 0.0
    return knee.delivered_per_s if delivered else knee.accepted_per_s


def _best(result: ScenarioResult | None, delivered: bool) -> float | None:
    """The highest rate any lossless step reached, whatever its latency: on a busy machine,
    where no step holds p99, this still ranks the backends."""
    if result is None or not result.steps:
        return None
    rates = [
        s.delivered_per_s if delivered else s.accepted_per_s
        for s in result.steps
        if s.errors == 0 and s.missing == 0
    ]
    return max(rates, default=0.0)


def _cpu(step: StepResult | None, role: str) -> float | None:
    if step is None:
        return None
    found = [u.per_1k_events for u in step.usage if u.role == role]
    if not found:
        return None
    if step.has_receiver and step.delivered:
        # per delivered event on e2e rows (every accepted event is owed one delivery)
        cpu = sum(u.cpu_seconds for u in step.usage if u.role == role)
        return cpu / step.delivered * 1000
    return sum(found)


def table(results: Mapping[str, Mapping[str, ScenarioResult]]) -> list[dict[str, Any]]:
    """One row per backend: the knees, p99s, CPU-s per 1,000 events (kbroker and the server),
    and the per-backend targets against the same run's Kafka row."""
    kafka_all = _knee(results.get("kafka", {}).get("ingress-all"), False)
    rows: list[dict[str, Any]] = []
    for backend, by_row in results.items():
        row: dict[str, Any] = {"backend": backend}
        for r in ROWS:
            res = by_row.get(r.key)
            step = _step(res)
            row[f"{r.key}_knee"] = _knee(res, r.scenario == "e2e")
            row[f"{r.key}_best"] = _best(res, r.scenario == "e2e")
            row[f"{r.key}_p99_ms"] = None
            if step is not None:
                lat = step.e2e_latency_ms if r.scenario == "e2e" else step.ingress_latency_ms
                row[f"{r.key}_p99_ms"] = lat.get("p99")
            row[f"{r.key}_kbroker_cpu_s_per_1k"] = _cpu(step, "server")
            row[f"{r.key}_server_cpu_s_per_1k"] = _cpu(step, "backend")
            row[f"{r.key}_others_cores"] = (
                step.extra.get("other_busy_cores") if step is not None else None
            )
            if res is not None and res.skipped:
                row[f"{r.key}_skipped"] = res.skipped
        ing, e2e = row["ingress-all_knee"], row["e2e_knee"]
        if ing is None or not kafka_all:
            row["target_ingress"] = "not measured" if ing is None else "no Kafka knee to compare"
        else:
            bound = INGRESS_VS_KAFKA * kafka_all
            row["target_ingress"] = (
                f"{'met' if ing >= bound else 'not met'} ({ing:,.0f} vs {bound:,.0f})"
            )
        row["target_e2e"] = (
            "not measured"
            if e2e is None
            else f"{'met' if e2e >= E2E_TARGET else 'not met'} ({e2e:,.0f} vs {E2E_TARGET:,.0f})"
        )
        rows.append(row)
    return rows
