"""The target table of docs/benchmarks.md as code: `kbroker bench targets` measures every row.

Why: a target written only in prose drifts from what is measured. Each row here names the
scenario, the flags that differ from the defaults, the staircase that finds its knee, the figure
it reads from the result, and the bound; `evaluate` turns results into "met / not met, gap". Rows
compared to a baseline (0.7 x ceiling, 0.6 x direct) read the baseline from the same run.
Kafka rows run only when `--kafka BOOTSTRAP` is given.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kbroker.bench import execute, runner, scenarios
from kbroker.bench.backends import backend_pids
from kbroker.bench.results import ScenarioResult

Figure = Callable[[ScenarioResult], float | None]


def _knee(attr: str) -> Figure:
    """A figure of the knee step; 0 when steps ran but none passed (below the lowest step)."""

    def read(result: ScenarioResult) -> float | None:
        knee = result.knee
        if knee is None:
            return 0.0 if result.steps else None
        return float(getattr(knee, attr))

    return read


def _knee_p99(result: ScenarioResult) -> float | None:
    """p99 at the knee; without one, at the lowest step (which failed: the honest number)."""
    knee = result.knee or (min(result.steps, key=lambda s: s.target_rate) if result.steps else None)
    return None if knee is None else knee.latency_ms.get("p99")


def _per_dispatcher_core(result: ScenarioResult) -> float | None:
    """Deliveries/s at the knee divided by the cores the broker process tree used meanwhile."""
    knee = result.knee
    if knee is None:
        return 0.0 if result.steps else None
    cores = sum(u.cores for u in knee.usage if u.role == "server")
    return knee.delivered_per_s / cores if cores > 0 else None


def _per_server_core(result: ScenarioResult) -> float | None:
    """Events per CPU-second of the server at the knee (or the lowest step): what one core of
    this broker would do if it had the core to itself. Robust to CPU-hungry neighbours, which
    the rates are not; informational, never judged."""
    step = result.knee or (min(result.steps, key=lambda s: s.target_rate) if result.steps else None)
    if step is None:
        return None
    cpu = sum(u.cpu_seconds for u in step.usage if u.role == "server")
    events = step.delivered if step.has_receiver else step.accepted
    return events / cpu if cpu > 0 else None


def _fact(key: str, scale: float = 1.0) -> Figure:
    def read(result: ScenarioResult) -> float | None:
        value = result.facts.get(key)
        return None if value is None else float(value) * scale

    return read


def _lossless(result: ScenarioResult) -> float | None:
    """Events lost (missing) summed over the steps: the target is zero."""
    if not result.steps:
        return None
    return float(sum(s.missing for s in result.steps))


@dataclass(frozen=True, slots=True)
class Check:
    label: str
    figure: Figure
    bound: float
    at_least: bool = True  # False: the figure must stay at or below the bound
    baseline: str | None = None  # the bound is `bound` x this run's figure of that row
    unit: str = "ev/s"
    informational: bool = False  # reported next to the targets, never met or missed


_CORE = Check("per server core (CPU)", _per_server_core, 0, informational=True)


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    title: str
    scenario: str
    staircase: tuple[float, float, float] | None  # START, STEP, MAX
    checks: tuple[Check, ...]
    overrides: dict[str, Any] = field(default_factory=dict)  # LoadOptions / BenchOptions fields
    kafka: bool = False
    rate: float = 1000.0  # rows without a staircase run once at this rate


_ING = Check("ingress", _knee("accepted_per_s"), 8000)
ROWS: tuple[Row, ...] = (
    Row("ceiling", "ceiling: bare ASGI 202, 1 process", "ceiling", (2000, 2000, 30000),
        (Check("ceiling", _knee("accepted_per_s"), 0), _CORE)),
    Row("direct", "direct: generator -> receiver", "direct", (2000, 2000, 30000),
        (Check("direct", _knee("delivered_per_s"), 0),)),
    Row("ingress", "ingress, embedded, all, 1 KB binary, 1 process", "ingress",
        (1000, 1000, 16000),
        (_ING, dataclasses.replace(_ING, label="vs ceiling", bound=0.7, baseline="ceiling"), _CORE),
        {"durability": "all"}),
    Row("ingress-2p", "ingress, 2 processes", "ingress", (2000, 2000, 24000),
        (dataclasses.replace(_ING, bound=14000),), {"durability": "all", "processes": 2}),
    Row("ingress-batch", "ingress, batch 100 events/request", "ingress", (10000, 10000, 100000),
        (dataclasses.replace(_ING, bound=50000), _CORE),
        {"durability": "all", "mode": "batch", "batch": 100}),
    Row("e2e", "e2e, 1 trigger", "e2e", (500, 500, 8000),
        (Check("delivered", _knee("delivered_per_s"), 3000),
         Check("p99 at knee", _knee_p99, 100, at_least=False, unit="ms"),
         Check("vs direct", _knee("delivered_per_s"), 0.6, baseline="direct"), _CORE)),
    Row("fanout", "fanout, 100 triggers, 10% matching", "fanout-100-10", (50, 50, 1000),
        (Check("deliveries/s per core", _per_dispatcher_core, 4000), _CORE)),
    Row("triggers", "1,000 idle triggers", "triggers-1000", None,
        (Check("RSS per trigger", _fact("rss_kb_per_trigger"), 100, at_least=False, unit="KB"),
         Check("Ready", _fact("ready_seconds"), 2, at_least=False, unit="s"))),
    Row("kafka-ingress", "Kafka ingress", "ingress", (1000, 1000, 16000),
        (dataclasses.replace(_ING, bound=8000), _CORE), {"durability": "all"}, kafka=True),
    Row("kafka-e2e", "Kafka e2e, 1 trigger", "e2e", (500, 500, 8000),
        (Check("delivered", _knee("delivered_per_s"), 3000), _CORE), kafka=True),
    Row("failing", "failing 10% 503: zero loss", "failing-10", None,
        (Check("events lost", _lossless, 0, at_least=False, unit="events"),)),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Verdict:
    row: str
    check: str
    measured: float | None  # median over the repeats
    bound: float | None  # after applying the baseline
    met: bool
    unit: str
    info: bool = False

    @property
    def gap(self) -> str:
        if self.measured is None or self.bound is None:
            return "not measured"
        if self.met:
            return "-"
        diff = self.measured - self.bound
        pct = f" ({diff / self.bound * 100:+.0f}%)" if self.bound else ""
        text = f"{diff:+,.0f}" if abs(diff) >= 100 else f"{diff:+.2f}"
        return f"{text} {self.unit}{pct}"

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "check": self.check,
            "measured": self.measured,
            "bound": self.bound,
            "met": self.met,
            "unit": self.unit,
            "gap": self.gap,
            "info": self.info,
        }


def _median(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def evaluate(results: dict[str, list[ScenarioResult]]) -> list[Verdict]:
    """Results per row key (one per repeat) -> one verdict per check, on medians."""
    firsts: dict[str, float | None] = {}
    for row in ROWS:
        if row.key in results and row.checks:
            firsts[row.key] = _median([row.checks[0].figure(r) for r in results[row.key]])
    out: list[Verdict] = []
    for row in ROWS:
        runs = results.get(row.key)
        if runs is None:
            continue
        for check in row.checks:
            measured = _median([check.figure(r) for r in runs])
            bound: float | None = check.bound
            if check.baseline is not None:
                base = firsts.get(check.baseline)
                bound = None if base is None else check.bound * base
            if row.key in ("ceiling", "direct") or check.informational:
                info = check.informational
                out.append(Verdict(row.key, check.label, measured, None, True, check.unit, info))
                continue
            met = (
                measured is not None
                and bound is not None
                and (measured >= bound if check.at_least else measured <= bound)
            )
            out.append(Verdict(row.key, check.label, measured, bound, met, check.unit))
    return out


async def run_suite(
    base: execute.BenchOptions,
    repeat: int,
    kafka: str | None,
    on_result: Callable[[str, ScenarioResult], None],
    progress: runner.Progress | None = None,
    step_done: execute.StepDone | None = None,
) -> dict[str, list[ScenarioResult]]:
    """Every row (Kafka rows only with a bootstrap), `repeat` times each, in table order."""
    out: dict[str, list[ScenarioResult]] = {}
    for row in ROWS:
        if row.kafka and not kafka:
            continue
        opts = _row_options(base, row, kafka)
        for i in range(repeat):
            name = row.key if repeat == 1 else f"{row.key}#{i + 1}"
            (sc,) = scenarios.parse(row.scenario)
            try:
                result = await execute.run(sc, opts, progress, step_done)
            except Exception as exc:  # a row that cannot run is "not measured", not a crash
                result = ScenarioResult(sc.name, sc.description, skipped=f"failed: {exc}")
            result = dataclasses.replace(result, name=name)
            on_result(name, result)
            out.setdefault(row.key, []).append(result)
    return out


def _row_options(base: execute.BenchOptions, row: Row, kafka: str | None) -> execute.BenchOptions:
    load_fields = {f.name for f in dataclasses.fields(runner.LoadOptions)}
    load = dataclasses.replace(
        base.load, **{k: v for k, v in row.overrides.items() if k in load_fields}
    )
    opts = dataclasses.replace(
        base,
        load=load,
        kafka=kafka if row.kafka else None,
        # Kafka's own CPU per event, reported apart from the broker's ("backend" in the usage)
        backend_pids=backend_pids("kafka", kafka) if row.kafka else (),
        **{k: v for k, v in row.overrides.items() if k not in load_fields},
    )
    if row.staircase is None:
        return dataclasses.replace(opts, rates=(row.rate,), staircase=False, p99_bound_ms=None)
    return dataclasses.replace(
        opts,
        rates=tuple(scenarios.parse_staircase(":".join(f"{x:g}" for x in row.staircase))),
        staircase=True,
    )
